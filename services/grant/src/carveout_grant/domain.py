"""Grants as the regulator sees them: pure state, the commands on it and the events they yield."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Literal

from pydantic import Field

from carveout_contracts import (
    BreachPolicy,
    Condition,
    GrantAmended,
    Grantee,
    GrantEvent,
    GrantIssued,
    GrantIssuedData,
    GrantReinstated,
    GrantSuspended,
    TermsChecks,
)
from carveout_contracts.common import Frozen, Identifier, UtcDatetime

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

    def status_at(self, now: datetime) -> PublicStatus:
        if self.lifecycle == "active" and now >= self.valid_until:
            return "expired"
        return self.lifecycle


def issue(request: GrantRequest, *, grant_id: str, by: str, now: datetime) -> GrantIssued:
    data = GrantIssuedData(
        grant_id=grant_id,
        carveout_id=request.carveout_id,
        grantee=request.grantee,
        model_id=request.model_id,
        valid_from=request.valid_from,
        valid_until=request.valid_until,
        conditions=request.conditions,
        breach_policy=request.breach_policy,
        issued_by=by,
    )
    return GrantIssued(producer=PRODUCER, occurred_at=now, key=grant_id, data=data)


def apply(state: Grant | None, event: GrantEvent) -> Grant:
    """Fold one grant event into the grant's state. Pure: no I/O, no clock."""
    if isinstance(event, GrantIssued):
        d = event.data
        return Grant(
            grant_id=d.grant_id,
            carveout_id=d.carveout_id,
            version=d.version,
            lifecycle="active",
            grantee=d.grantee,
            model_id=d.model_id,
            valid_from=d.valid_from,
            valid_until=d.valid_until,
            conditions=d.conditions,
            breach_policy=d.breach_policy,
            issued_by=d.issued_by,
            issued_at=event.occurred_at,
            updated_at=event.occurred_at,
        )
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
    else:
        version = event.data.grant_versions.get(state.grant_id, state.version + 1)
        update |= {"version": version, "lifecycle": "revoked"}
    return state.model_copy(update=update)
