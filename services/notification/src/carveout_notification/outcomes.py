"""The outcome events of deliveries, ``notification.delivered`` and ``notification.failed``,
and their publication from the store (an outbox) by the replica that holds each."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from carveout_contracts import (
    Envelope,
    NotificationDelivered,
    NotificationFailed,
    codec,
    topics,
)
from carveout_runtime import telemetry

from .domain import NAMESPACE
from .held import HeldClaims
from .store import NotificationRecord, NotificationStore

log = logging.getLogger("carveout.notification.delivery")


def outcome_event(
    n: NotificationRecord, outcome: str, attempts: int, at: datetime, error: str | None
) -> Envelope:
    """``notification.delivered`` or ``.failed``, with an id derived from the notification."""
    common: dict[str, Any] = {
        "notification_id": n.notification_id,
        "subscription_id": n.subscription_id,
        "source_event_id": n.event_id,
        "source_event_type": n.event_type,
        "channel": n.channel,
        "address": n.address,
        "attempts": attempts,
    }
    event_id = uuid.uuid5(NAMESPACE, f"{n.notification_id}/{outcome}")
    if outcome == "delivered":
        return NotificationDelivered.model_validate(
            {
                "event_id": event_id,
                "producer": "notification",
                "data": {**common, "delivered_at": at},
            }
        )
    return NotificationFailed.model_validate(
        {
            "event_id": event_id,
            "producer": "notification",
            "data": {**common, "failed_at": at, "error": error or "unknown"},
        }
    )


class Announcer:
    """Publishes the outcome events stored and not yet published, each by one replica."""

    def __init__(
        self,
        store: NotificationStore,
        publish: Callable[[Envelope], Awaitable[None]],
        claims: HeldClaims,
    ) -> None:
        self.store = store
        self.publish = publish
        self.claims = claims
        self.error: str | None = None
        self._running = asyncio.Lock()

    async def __call__(self) -> int:
        """Publish what this replica holds or takes over; returns how many.

        The replica that recorded an outcome holds its claim until it is published; one
        whose lease ran out first (a crash, a broker failure outliving it) is taken over
        by whichever replica asks next, and published with the same event id.
        """
        if self._running.locked():
            return 0
        total = 0
        async with self._running:
            # The store is read and written in worker threads: the event loop meanwhile
            # runs the consumers of this process.
            while pending := await asyncio.to_thread(self._claim):
                ids = [nid for nid, _ in pending]
                contexts = await asyncio.to_thread(self.store.traceparents, ids)
                try:
                    for nid, value in pending:
                        event = codec.decode(topics.NOTIFICATIONS, value)
                        # in the trace of the event the notification told of
                        with telemetry.continue_trace(f"announce {event.type}", contexts.get(nid)):
                            await self.publish(event)
                except Exception as exc:
                    self.error = f"{type(exc).__name__}: {exc}"
                    log.error("could not announce a notification outcome, will retry: %s", exc)
                    break
                self.error = None
                await asyncio.to_thread(self.store.mark_announced, ids, self.claims.clock())
                self.claims.ended(ids)
                total += len(pending)
        return total

    def _claim(self) -> list[tuple[str, str]]:
        now = self.claims.clock()
        until = self.claims.lease.until(now)
        pending = self.store.claim_unannounced(self.claims.replica, now, until)
        self.claims.kept([nid for nid, _ in pending], until)
        return pending
