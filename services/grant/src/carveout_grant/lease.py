"""Who relays the outbox when several grant replicas share one store: pure.

One replica at a time holds the relay lease (a row in the store: holder and the instant
the lease ends). The holder renews it while relaying; any other replica may take it once
it has ended, so a relay that dies is replaced a lease later. No I/O and no clock: time
comes in as ``now``; the store applies :func:`claim` with a conditional update on the row
as it was read, so two replicas asking at once cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Lease:
    """The relay lease as the store holds it."""

    holder: str
    until: datetime
    """The lease ends at this instant (exclusive): from then on anyone may take it."""


def holds(lease: Lease | None, holder: str, now: datetime) -> bool:
    """Whether ``holder`` holds ``lease`` at ``now``."""
    return lease is not None and lease.holder == holder and now < lease.until


def claim(lease: Lease | None, holder: str, now: datetime, seconds: float) -> Lease | None:
    """The lease ``holder`` holds after asking at ``now`` for ``seconds`` more: taken when
    there is none or it has ended, renewed when it is the holder's own; ``None`` while
    another holder's lease runs."""
    if lease is not None and lease.holder != holder and now < lease.until:
        return None
    return Lease(holder, now + timedelta(seconds=seconds))


def next_ask(
    asked_at: datetime | None, lease: Lease | None, holder: str, every_seconds: float
) -> datetime | None:
    """When to ask for (or renew) the lease next; ``None``: at once. Every
    ``every_seconds`` (well under the lease's length, so the holder renews before it
    ends), and a replica waiting on another's lease asks as soon as that one ends."""
    if asked_at is None:
        return None
    due = asked_at + timedelta(seconds=every_seconds)
    if lease is not None and lease.holder != holder:
        return min(due, lease.until)
    return due
