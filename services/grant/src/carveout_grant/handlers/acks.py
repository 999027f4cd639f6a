"""Fold ``carveout.acks`` into the store: enforcement's acks and heartbeats (DESIGN §12).

Both are kept by idempotent upserts (see :mod:`carveout_grant.acks_store`), so the
consumer writes no processed marks: a heartbeat a second from every enforcer would
otherwise leave a row per second behind. Live, each write that tells something new wakes
the requests waiting on propagation; a replay folds the same way and tells no one.
"""

from __future__ import annotations

from dataclasses import dataclass

from carveout_contracts import EnforcementApplied, EnforcementHeartbeat
from carveout_runtime.inbound import Inbound
from carveout_runtime.retries import with_retries

from ..acks_store import AckStore
from ..clock import Clock, system_clock
from ..propagation_book import PropagationBook


def never_processed(_event_id: str) -> bool:
    """Acks need no dedupe by event id: their upserts change nothing when repeated."""
    return False


@dataclass
class AckFolder:
    """The consumer of ``carveout.acks``. ``book`` is told of each change (``None`` in a
    replay); ``clock`` stamps when each heartbeat was read."""

    store: AckStore
    book: PropagationBook | None = None
    clock: Clock = system_clock
    retry_attempts: int = 5

    async def __call__(
        self, event: EnforcementApplied | EnforcementHeartbeat, inbound: Inbound
    ) -> None:
        if isinstance(event, EnforcementApplied):
            news = await with_retries(
                lambda: self.store.record_ack(event),
                attempts=self.retry_attempts,
                health=inbound.health,
                what="recording an acknowledgement",
            )
            if news and self.book is not None:
                self.book.acked(event)
            return
        received = self.clock()
        moved = await with_retries(
            lambda: self.store.record_heartbeat(event, received),
            attempts=self.retry_attempts,
            health=inbound.health,
            what="recording a heartbeat",
        )
        if moved and self.book is not None:
            self.book.moved()
