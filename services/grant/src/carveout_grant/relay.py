"""The outbox relay: publishes recorded grant events to Kafka, in order, until acknowledged,
and puts the whole history back when the broker comes back without the grants log. Of
replicas sharing a store, the one holding the relay lease relays (DESIGN §11)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from carveout_runtime import telemetry
from carveout_runtime.retries import wait_set

from .clock import Clock, system_clock
from .lease import Lease, holds, next_ask
from .lease_store import RelayLeases
from .propagation import LogPosition
from .store import GrantStore

log = logging.getLogger("carveout.grant.relay")


Publish = Callable[[bytes, str, bytes, str | None], Awaitable[Any]]
"""``(value, topic, key, traceparent)``: publish one event, signed, and wait for the broker."""


@dataclass(frozen=True, slots=True)
class Leadership:
    """How this replica asks for the relay lease, so that one replica relays at a time."""

    leases: RelayLeases
    holder: str
    """This replica's id in the lease row (unique to the process)."""
    lease_seconds: float = 3.0
    renew_seconds: float = 1.0


@dataclass(eq=False)
class OutboxRelay:
    """Publishes the outbox's unpublished events, oldest first, and says when one is out.

    With ``leadership``, only while this replica holds the relay lease: any replica may
    record events, one relays them all, and another takes over when its lease ends. A
    replica answers :meth:`wait_published` whoever relays, from the store's marks.
    """

    store: GrantStore
    publish: Publish
    poll_seconds: float
    clock: Clock = system_clock
    leadership: Leadership | None = None
    watch_seconds: float = 0.05
    last_error: str | None = field(default=None, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _published_up_to: int = field(default=0, init=False)
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition, init=False)
    _lease: Lease | None = field(default=None, init=False)
    _asked_at: datetime | None = field(default=None, init=False)

    def wake(self) -> None:
        self._wake.set()

    def leading(self) -> bool:
        """Whether this replica relays now; asks for the lease, or renews it, when due."""
        if (lead := self.leadership) is None:
            return True
        now = self.clock()
        due = next_ask(self._asked_at, self._lease, lead.holder, lead.renew_seconds)
        if due is None or now >= due or now < (self._asked_at or now):
            self._asked_at = now
            lease = lead.leases.take(lead.holder, now, lead.lease_seconds)
            if holds(lease, lead.holder, now) != holds(self._lease, lead.holder, now):
                # Taking the lease at start is routine; a change of hands later is news.
                log.log(
                    logging.INFO if self._lease is None else logging.WARNING,
                    "%s relays the outbox now",
                    "this replica" if holds(lease, lead.holder, now) else "another replica",
                )
            self._lease = lease
        return holds(self._lease, lead.holder, now)

    def _idle_seconds(self) -> float:
        """How long to wait for a wake-up when nothing was relayed: the poll, or less when
        the lease is to be asked for (or renewed) sooner."""
        if self.leadership is None:
            return self.poll_seconds
        due = next_ask(
            self._asked_at, self._lease, self.leadership.holder, self.leadership.renew_seconds
        )
        until = (due - self.clock()).total_seconds() if due is not None else 0.0
        return max(0.01, min(self.poll_seconds, until))

    async def put_back(self) -> int:
        """Re-publish the whole history: the broker came back without the grants log.

        The embedded broker keeps its log in memory; the grant service is the system of
        record, so it puts the log back (:mod:`carveout_runtime.log_restarts` tells when).
        Consumers dedupe by ``event_id``; each event keeps the position it was first
        published at.
        """
        _, published = await asyncio.to_thread(self.store.counts)
        if published == 0:
            return 0
        count = await asyncio.to_thread(self.store.mark_all_unpublished)
        self.wake()
        return count

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            # A replica stopping hands the lease over at once rather than when it ends.
            if self.leadership is not None and holds(
                self._lease, self.leadership.holder, self.clock()
            ):
                with contextlib.suppress(Exception):
                    self.leadership.leases.release(self.leadership.holder)

    async def _run(self) -> None:
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
                await wait_set(self._wake, self._idle_seconds())
                self._wake.clear()

    async def relay_once(self) -> int:
        """Publish a batch of unpublished events if this replica relays; how many."""
        if not self.leading():
            return 0
        rows = self.store.unpublished()
        # One event at a time, each acknowledged before the next: the order on the topic
        # is the order the grant service recorded, and every event is its own record
        # batch, so a broker's end offsets always count it (Tansu reports the start of
        # the last batch as the end, and enforcement's catch-up check reads end offsets).
        positions: dict[int, LogPosition] = {}
        done: list[int] = []
        for row in rows:
            # Checked before each event (renewing the lease when due): a relay whose
            # lease ended stops, so two relay at once only if one stalls between this
            # check and its publish; consumers dedupe what that repeats by event id.
            if not self.leading() or row.seq is None:
                break
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
            if (position := log_position(sent, self.clock)) is not None:
                positions[row.seq] = position
            done.append(row.seq)
        if not done:
            return 0
        self.store.mark_published(done, self.clock(), positions)
        async with self._progress:
            self._published_up_to = max(self._published_up_to, max(done))
            self._progress.notify_all()
        return len(done)

    async def wait_published(self, seq: int, within_s: float) -> bool:
        """Whether event ``seq`` is published within ``within_s``: by this replica's relay
        (woken now), or by another's, seen in the store every ``watch_seconds``."""
        self.wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            if self._published_up_to >= seq or self.store.is_published(seq):
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, self.watch_seconds)), self._progress:
                    await self._progress.wait_for(lambda: self._published_up_to >= seq)


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
