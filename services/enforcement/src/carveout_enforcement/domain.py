"""Grants over time, as enforcement needs them: every version with the interval it was in force.

``apply`` is a pure projection of grant events; an access is judged against the period
in force at the access's ``occurred_at``, not the latest state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from carveout_contracts import (
    BreachPolicy,
    Condition,
    GrantAmended,
    GrantAmendedData,
    GrantEvent,
    GrantIssued,
    GrantIssuedData,
    GrantReinstated,
    GrantSuspended,
)
from carveout_contracts import affected_grants as affected_grants  # re-exported for the projection
from carveout_contracts.common import Frozen, UtcDatetime

Lifecycle = Literal["active", "suspended", "revoked"]


class GrantPeriod(Frozen):
    """One version of a grant, in force from ``effective_at`` until the next period starts.

    The first period has no start: a grant covers its whole validity window once issued.
    """

    version: int
    status: Lifecycle
    effective_at: UtcDatetime | None
    valid_from: UtcDatetime
    valid_until: UtcDatetime
    conditions: list[Condition]
    appended_ms: int | None = None
    """When the log received the event that made this version (its record timestamp, epoch
    ms): an access the log received before it is judged without it, live and in a replay
    alike, however late the grant service relayed it (the first version: ``issued_ms``)."""


class GrantView(Frozen):
    """A grant as enforcement projects it: its identity, its policy and every period."""

    grant_id: str
    carveout_id: str
    grantee_id: str
    model_id: str
    breach_policy: BreachPolicy
    periods: list[GrantPeriod]
    updated_at: UtcDatetime
    issued_ms: int | None = None
    """When ``grant.issued`` was appended to the log (its record timestamp, epoch ms).

    A grant covers only accesses the log received after it: so whether a grant existed
    for an access is decided by the log itself, the same live and in a replay, however
    far behind the access consumer runs.
    """

    @classmethod
    def issued(cls, event: GrantIssued, appended_ms: int | None) -> GrantView:
        """The view a ``grant.issued`` starts: one period, in force for the whole validity."""
        d = event.data
        return cls(
            grant_id=d.grant_id,
            carveout_id=d.carveout_id,
            grantee_id=d.grantee.id,
            model_id=d.model_id,
            breach_policy=d.breach_policy,
            periods=[period_of(d, "active", effective_at=None)],
            updated_at=event.occurred_at,
            issued_ms=appended_ms,
        )

    @property
    def current(self) -> GrantPeriod:
        return self.periods[-1]

    @property
    def version(self) -> int:
        return self.current.version

    @property
    def status(self) -> Lifecycle:
        return self.current.status

    def period_at(self, moment: datetime) -> GrantPeriod:
        """The period in force at ``moment``."""
        found = self.periods[0]
        for period in self.periods[1:]:
            if period.effective_at is not None and period.effective_at <= moment:
                found = period
            else:
                break
        return found


def period_of(
    terms: GrantIssuedData | GrantAmendedData, status: Lifecycle, effective_at: datetime | None
) -> GrantPeriod:
    """The version whose terms an issue or an amendment sets, in force from ``effective_at``."""
    return GrantPeriod(
        version=terms.version,
        status=status,
        effective_at=effective_at,
        valid_from=terms.valid_from,
        valid_until=terms.valid_until,
        conditions=terms.conditions,
    )


def apply(
    view: GrantView | None, event: GrantEvent, grant_id: str, appended_ms: int | None = None
) -> GrantView | None:
    """Fold one grant event into grant ``grant_id``'s view. Pure: no I/O, no clock.

    ``appended_ms`` is the event's record timestamp, kept with the version it makes.
    Returns ``None`` when the event concerns a grant this view has never seen issued.
    """
    if isinstance(event, GrantIssued):
        # Issued once: a repeat must never reset later versions.
        return view if view is not None else GrantView.issued(event, appended_ms)
    if view is None:
        return None
    current = view.current
    if current.status == "revoked":
        return view  # revocation is final
    policy = view.breach_policy
    if isinstance(event, GrantAmended):
        period = period_of(event.data, current.status, event.data.effective_at)
        policy = event.data.breach_policy
    elif isinstance(event, GrantSuspended | GrantReinstated):
        status: Lifecycle = "suspended" if isinstance(event, GrantSuspended) else "active"
        period = current.model_copy(
            update={
                "version": event.data.version,
                "status": status,
                "effective_at": event.data.effective_at,
            }
        )
    else:
        r = event.data
        period = current.model_copy(
            update={
                "version": r.grant_versions.get(grant_id, current.version + 1),
                "status": "revoked",
                "effective_at": r.effective_at,
            }
        )
    if period.version <= current.version:
        return view  # an older or repeated version changes nothing
    period = period.model_copy(update={"appended_ms": appended_ms})
    return view.model_copy(
        update={
            "periods": [*view.periods, period],
            "breach_policy": policy,
            "updated_at": event.occurred_at,
        }
    )
