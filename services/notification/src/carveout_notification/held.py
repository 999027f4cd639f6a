"""The claims one replica holds: taken in the store, renewed while held, given up.

What the rules of :mod:`.claims` decide, this applies for one replica through the store,
and remembers each claim's lease so that it renews the ones due and learns which ones it
lost (taken over while it stalled past their lease).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from .claims import Lease
from .schedule import DeliverySchedule


class HeldClaims:
    def __init__(
        self,
        store: DeliverySchedule,
        replica: str,
        lease: Lease,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.replica = replica
        self.lease = lease
        self.clock = clock
        self.leases: dict[str, datetime] = {}
        """Each claim held, by notification id, with the end of its lease as last written."""

    def __contains__(self, notification_id: object) -> bool:
        return notification_id in self.leases

    def until(self) -> datetime:
        """The end of a lease taken or renewed now."""
        return self.lease.until(self.clock())

    def claim(self, notification_ids: Iterable[str]) -> set[str]:
        """Claim those of ``notification_ids`` that are pending and claimable; the ones won."""
        now = self.clock()
        until = self.lease.until(now)
        won = self.store.claim(notification_ids, self.replica, now, until)
        self.kept(won, until)
        return won

    def kept(self, notification_ids: Iterable[str], until: datetime) -> None:
        """The store holds these for this replica until ``until`` (an outcome to publish)."""
        self.leases.update(dict.fromkeys(notification_ids, until))

    def ended(self, notification_ids: Iterable[str]) -> None:
        """The store no longer holds these for this replica (released, announced, lost)."""
        for nid in notification_ids:
            self.leases.pop(nid, None)

    def renew_due(self) -> set[str]:
        """Renew the claims past the renewal point of their lease; returns those lost."""
        now = self.clock()
        # A copy: worker threads add and end claims meanwhile (a round's, an announcement's).
        leases = list(self.leases.items())
        due = [nid for nid, until in leases if self.lease.renewal_due(until, now)]
        if not due:
            return set()
        until = self.lease.until(now)
        still = self.store.renew(due, self.replica, until)
        self.kept(still, until)
        lost = set(due) - still
        self.ended(lost)
        return lost

    def release(self, notification_ids: Iterable[str] | None = None) -> int:
        """Give up claims (these, or every claim of this replica in the store: one left by a
        previous process under the same id), so others need not wait for their leases."""
        ids = None if notification_ids is None else list(notification_ids)
        released = self.store.release(self.replica, ids)
        if ids is None:
            self.leases.clear()
        else:
            self.ended(ids)
        return released
