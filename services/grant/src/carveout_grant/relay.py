"""The outbox relay: publishes recorded grant events to Kafka, in order, until acknowledged,
and puts the whole history back when the broker comes back without the grants log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from carveout_contracts import topics
from carveout_runtime import telemetry
from carveout_runtime.logread import partitions
from carveout_runtime.retries import wait_set

from .clock import Clock, system_clock
from .propagation import LogPosition
from .store import GrantStore

log = logging.getLogger("carveout.grant.relay")


Publish = Callable[[bytes, str, bytes, str | None], Awaitable[Any]]
"""``(value, topic, key, traceparent)``: publish one event, signed, and wait for the broker."""


class OutboxRelay:
    """Publishes the outbox's unpublished events, oldest first, and says when one is out."""

    def __init__(
        self,
        store: GrantStore,
        publish: Publish,
        poll_seconds: float,
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self.publish = publish
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._wake = asyncio.Event()
        self._published_up_to = 0
        self._progress = asyncio.Condition()
        self.last_error: str | None = None

    def wake(self) -> None:
        self._wake.set()

    async def restore_log_if_lost(self, topic_event_count: int) -> int:
        """Re-publish the whole history when the broker came back without the grants log.

        The embedded broker keeps its log in memory; the grant service is the system of
        record, so it puts the log back. Consumers dedupe by ``event_id``.
        """
        _, published = self.store.counts()
        if published == 0 or topic_event_count > 0:
            return 0
        count = self.store.mark_all_unpublished()
        log.warning("grants log is empty but %d events were published: re-publishing", count)
        return count

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                sent = await self.relay_once()
                self.last_error = None
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("outbox relay failed, retrying in %.1fs: %s", backoff, self.last_error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if sent == 0:
                await wait_set(self._wake, self.poll_seconds)
                self._wake.clear()

    async def relay_once(self) -> int:
        rows = self.store.unpublished()
        if not rows:
            return 0
        # One event at a time, each acknowledged before the next: the order on the topic
        # is the order the grant service recorded, and every event is its own record
        # batch, so a broker's end offsets always count it (Tansu reports the start of
        # the last batch as the end, and enforcement's catch-up check reads end offsets).
        positions: dict[int, LogPosition] = {}
        for row in rows:
            # Each event continues the trace its row recorded (the regulator's request, or
            # the breach that tripped a policy).
            with telemetry.continue_trace(
                f"relay {row.type}",
                row.traceparent,
                attributes={"carveout.event_id": row.event_id, "carveout.grant_id": row.grant_id},
            ):
                sent = await self.publish(
                    row.payload.encode(), row.topic, row.key.encode(), row.traceparent
                )
            position = log_position(sent, self.clock)
            if position is not None and row.seq is not None:
                positions[row.seq] = position
        seqs = [row.seq for row in rows if row.seq is not None]
        self.store.mark_published(seqs, self.clock(), positions)
        async with self._progress:
            self._published_up_to = max(self._published_up_to, max(seqs))
            self._progress.notify_all()
        return len(rows)

    async def wait_published(self, seq: int, within_s: float) -> bool:
        self.wake()
        try:
            async with asyncio.timeout(within_s), self._progress:
                await self._progress.wait_for(lambda: self._published_up_to >= seq)
        except TimeoutError:
            return False
        return True


LOG_APPEND_TIME = 1
"""Kafka's timestamp type of a record stamped by the broker when appended."""


def log_position(sent: Any, clock: Clock) -> LogPosition | None:
    """Where and when the log received a published record, from the broker's record
    metadata: its append time when the topic stamps LogAppendTime, else the time the
    publish was acknowledged. ``None`` when the broker said nothing (an in-memory one)."""
    partition, offset = getattr(sent, "partition", None), getattr(sent, "offset", None)
    if not isinstance(partition, int) or not isinstance(offset, int) or offset < 0:
        return None
    stamp = getattr(sent, "timestamp", None)
    by_broker = getattr(sent, "timestamp_type", None) == LOG_APPEND_TIME
    if by_broker and isinstance(stamp, int) and stamp >= 0:
        return LogPosition(partition, offset, datetime.fromtimestamp(stamp / 1000, UTC))
    return LogPosition(partition, offset, clock())


async def grants_log_size(bootstrap: str) -> int:
    """How many events the broker holds on the grants topic (end minus beginning offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions(consumer, topics.GRANTS)
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(max(0, ends[tp] - starts[tp]) for tp in tps)
    finally:
        await consumer.stop()
