"""Grants as the regulator sees them: pure state, the commands on it and the events they yield."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar
from uuid import UUID, uuid4

from pydantic import Field

from carveout_contracts import (
    BreachPolicy,
    CarveoutRevoked,
    CarveoutRevokedData,
    Condition,
    GrantAmended,
    GrantAmendedData,
    Grantee,
    GrantEvent,
    GrantIssued,
    GrantIssuedData,
    GrantReinstated,
    GrantStatusChangeData,
    GrantSuspended,
    TermsChecks,
)
from carveout_contracts.common import Frozen, Identifier, Reason, UtcDatetime
from carveout_contracts.events.envelope import Envelope

PRODUCER = "grant"
Lifecycle = Literal["active", "suspended", "revoked"]
PublicStatus = Literal["active", "suspended", "revoked", "expired"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_grant_id() -> str:
    """``grt_`` and a ULID: sortable by creation time, unique without coordination."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "grt_" + "".join(reversed(chars))


class GrantRequest(TermsChecks):
    """What a regulator sends to issue a grant: ``grant.issued`` data less what the service sets."""

    carveout_id: Identifier
    model_id: Identifier
    grantee: Grantee
    valid_from: UtcDatetime
    valid_until: UtcDatetime
    conditions: list[Condition] = Field(default_factory=list)
    breach_policy: BreachPolicy = Field(default_factory=BreachPolicy)


class Grant(Frozen):
    """The grant service's record of one grant, rebuilt from its own events by :func:`apply`."""

    grant_id: str
    carveout_id: str
    version: int
    lifecycle: Lifecycle
    grantee: Grantee
    model_id: str
    valid_from: UtcDatetime
    valid_until: UtcDatetime
    conditions: list[Condition]
    breach_policy: BreachPolicy
    issued_by: str
    issued_at: UtcDatetime
    updated_at: UtcDatetime
    reinstated_at: UtcDatetime | None = None
    """When the grant was last reinstated: breaches before it no longer count."""

    def status_at(self, now: datetime) -> PublicStatus:
        if self.lifecycle == "active" and now >= self.valid_until:
            return "expired"
        return self.lifecycle


AnnouncedAs = TypeVar("AnnouncedAs", bound=Envelope)


def _announce(
    kind: type[AnnouncedAs], data: Any, now: datetime, event_id: UUID | None = None
) -> AnnouncedAs:
    """The grant service's event of ``kind`` carrying ``data``, keyed as its topic wants
    (each kind sets its own ``type`` and ``version``)."""
    envelope = {"event_id": event_id or uuid4(), "producer": PRODUCER, "occurred_at": now}
    return kind.model_validate({**envelope, "key": kind.key_of(data), "data": data})


def issue(request: GrantRequest, *, grant_id: str, by: str, now: datetime) -> GrantIssued:
    data = GrantIssuedData(**dict(request), grant_id=grant_id, issued_by=by)
    return _announce(GrantIssued, data, now)


def apply(state: Grant | None, event: GrantEvent) -> Grant:
    """Fold one grant event into the grant's state. Pure: no I/O, no clock."""
    if isinstance(event, GrantIssued):
        at = event.occurred_at  # a grant starts as its grant.issued data, in force
        return Grant(**dict(event.data), lifecycle="active", issued_at=at, updated_at=at)
    if state is None:
        raise ValueError(f"{event.type} for a grant that was never issued")
    update: dict[str, object] = {"updated_at": event.occurred_at}
    if isinstance(event, GrantAmended):
        a = event.data
        update |= {
            "version": a.version,
            "valid_from": a.valid_from,
            "valid_until": a.valid_until,
            "conditions": a.conditions,
            "breach_policy": a.breach_policy,
        }
    elif isinstance(event, GrantSuspended | GrantReinstated):
        lifecycle = "suspended" if isinstance(event, GrantSuspended) else "active"
        update |= {"version": event.data.version, "lifecycle": lifecycle}
        if isinstance(event, GrantReinstated):
            update["reinstated_at"] = event.data.effective_at
    else:
        version = event.data.grant_versions.get(state.grant_id, state.version + 1)
        update |= {"version": version, "lifecycle": "revoked"}
    return state.model_copy(update=update)


class GrantConflict(Exception):
    """The action does not fit the grant's state (reinstating a revoked grant, say)."""


class AmendRequest(TermsChecks):
    """The complete new terms of a grant, and why."""

    valid_from: UtcDatetime
    valid_until: UtcDatetime
    conditions: list[Condition] = Field(default_factory=list)
    breach_policy: BreachPolicy = Field(default_factory=BreachPolicy)
    reason: Reason


class ActionRequest(Frozen):
    """Why a regulator suspends, reinstates or revokes."""

    reason: Reason


def amend(grant: Grant, request: AmendRequest, *, by: str, now: datetime) -> GrantAmended:
    if grant.lifecycle == "revoked":
        raise GrantConflict(f"grant {grant.grant_id} is revoked; a revoked grant cannot be amended")
    data = GrantAmendedData(
        **dict(request),
        grant_id=grant.grant_id,
        version=grant.version + 1,
        amended_by=by,
        effective_at=now,
    )
    return _announce(GrantAmended, data, now)


@dataclass(frozen=True, slots=True)
class PolicyTrip:
    """Why a breach policy acts (``cause: breach_policy``): the breaches that tripped it,
    and its event's id, derived so that ordering the action again announces it once."""

    breach_ids: list[str]
    event_id: UUID


def _status_change(
    grant: Grant, reason: str, by: str, now: datetime, tripped: PolicyTrip | None
) -> GrantStatusChangeData:
    return GrantStatusChangeData(
        grant_id=grant.grant_id,
        version=grant.version + 1,
        reason=reason,
        by=by,
        effective_at=now,
        cause="breach_policy" if tripped else "regulator",
        breach_ids=tripped.breach_ids if tripped else [],
    )


def suspend(
    grant: Grant, reason: str, *, by: str, now: datetime, tripped: PolicyTrip | None = None
) -> GrantSuspended:
    """Suspend an active grant, on a regulator's order or tripped by its breach policy."""
    if grant.lifecycle != "active":
        raise GrantConflict(
            f"grant {grant.grant_id} is {grant.lifecycle}; only an active grant can be suspended"
        )
    change = _status_change(grant, reason, by, now, tripped)
    return _announce(GrantSuspended, change, now, tripped.event_id if tripped else None)


def reinstate(grant: Grant, reason: str, *, by: str, now: datetime) -> GrantReinstated:
    if grant.lifecycle != "suspended":
        raise GrantConflict(
            f"grant {grant.grant_id} is {grant.lifecycle}; only a suspended grant can be reinstated"
        )
    return _announce(GrantReinstated, _status_change(grant, reason, by, now, None), now)


def revoke(
    grants: Sequence[Grant],
    reason: str,
    *,
    carveout_id: str,
    by: str,
    now: datetime,
    tripped: PolicyTrip | None = None,
) -> CarveoutRevoked:
    """Revoke the given grants of one carveout for good (those not revoked already), on a
    regulator's order or tripped by a grant's breach policy."""
    live = [g for g in grants if g.lifecycle != "revoked"]
    if not live:
        raise GrantConflict(f"nothing to revoke: every grant of {carveout_id} is revoked already")
    return _announce(
        CarveoutRevoked,
        CarveoutRevokedData(
            carveout_id=carveout_id,
            grant_ids=[g.grant_id for g in live],
            grant_versions={g.grant_id: g.version + 1 for g in live},
            reason=reason,
            revoked_by=by,
            effective_at=now,
            cause="breach_policy" if tripped else "regulator",
            breach_ids=tripped.breach_ids if tripped else [],
        ),
        now,
        tripped.event_id if tripped else None,
    )


def revoke_in_parts(
    grants: Sequence[Grant],
    reason: str,
    *,
    carveout_id: str,
    by: str,
    now: datetime,
    partition_of: Callable[[str], Hashable],
) -> list[CarveoutRevoked]:
    """Revoke a carveout's grants with one event per partition of ``carveout.grants`` they
    fall in, so each grant's revocation follows its
    earlier versions in one partition (see :mod:`.partitions`)."""
    live = [g for g in grants if g.lifecycle != "revoked"]
    if not live:
        raise GrantConflict(f"nothing to revoke: every grant of {carveout_id} is revoked already")
    parts: dict[Hashable, list[Grant]] = {}
    for grant in live:
        parts.setdefault(partition_of(grant.grant_id), []).append(grant)
    return [revoke(p, reason, carveout_id=carveout_id, by=by, now=now) for p in parts.values()]


def revoke_grant(
    grant: Grant, reason: str, *, by: str, now: datetime, tripped: PolicyTrip | None = None
) -> CarveoutRevoked:
    """Revoke one grant for good: a revocation of its carveout naming that grant alone."""
    return revoke([grant], reason, carveout_id=grant.carveout_id, by=by, now=now, tripped=tripped)
