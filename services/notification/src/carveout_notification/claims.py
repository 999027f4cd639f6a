"""Claims on deliveries: which replica works on a notification now, and until when.

Replicas of the notification service share one store. A replica attempts a notification,
or publishes its outcome event, only while it holds the notification's claim: its id in
``claimed_by`` and a lease in ``lease_until``. A lease that has run out means its replica
died or stalled, and any replica may take the claim over. These are the rules, as pure
functions of the claim as stored, the replica asking and the time; the store's
conditional updates say the same in SQL, and the store tests hold the two to agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


def claimable(claimed_by: str | None, lease_until: datetime | None, now: datetime) -> bool:
    """Whether any replica may claim the notification at ``now``: nobody holds it, or the
    lease of whoever held it ran out (strictly before ``now``)."""
    return claimed_by is None or lease_until is None or lease_until < now


def holds(claimed_by: str | None, replica: str) -> bool:
    """Whether ``replica`` may record an attempt's outcome: the claim is still its own.

    An outcome is recorded only by the claim's holder, so a replica that stalled past its
    lease and was taken over cannot record a second outcome when it wakes. A lease that ran
    out and was not taken over yet is still held: nobody else is attempting.
    """
    return claimed_by == replica


def startable_at(
    next_attempt_at: datetime, claimed_by: str | None, lease_until: datetime | None
) -> datetime:
    """When a pending notification may next be started by a replica that does not hold it:
    at its scheduled time, and not before its holder's lease runs out."""
    if claimed_by is None or lease_until is None:
        return next_attempt_at
    return max(next_attempt_at, lease_until)


@dataclass(frozen=True, slots=True)
class Lease:
    """How long a claim lasts unless renewed, and when its holder renews it."""

    seconds: float
    renew_after: float = 1 / 3
    """The fraction of the lease after which a holder still at work renews it: a renewal
    may fail or be late twice before the lease runs out."""

    def __post_init__(self) -> None:
        if self.seconds <= 0 or not 0 < self.renew_after < 1:
            raise ValueError("a lease needs seconds > 0 and 0 < renew_after < 1")

    def until(self, now: datetime) -> datetime:
        """The end of a lease taken or renewed at ``now``."""
        return now + timedelta(seconds=self.seconds)

    def renewal_due(self, lease_until: datetime, now: datetime) -> bool:
        """Whether a claim held until ``lease_until`` is to be renewed at ``now``: once the
        fraction ``renew_after`` of it has passed."""
        return lease_until - now <= timedelta(seconds=self.seconds * (1 - self.renew_after))

    @property
    def check_every(self) -> float:
        """How often a holder looks for claims due for renewal (seconds): often enough that
        a claim is renewed well before the lease runs out."""
        return self.seconds * self.renew_after / 2
