"""Topics that restart from zero: put back what a store is the record of, count the rest.

The embedded broker keeps its log in memory: when it dies, ``carveout up`` starts it
again, empty, and the services keep running. Each service watches the end offsets of the
topics it cares about, and of ``carveout.acks``, where enforcement's heartbeats arrive
every second. A partition whose end went *down* restarted from zero, and with it the
whole log. Then:

- a topic whose record of truth is the service's store (grants, breaches, checkpoints,
  notification outcomes) is put back from it (its :data:`Restore`); consumers dedupe by
  ``event_id``, so what they had already handled changes nothing;
- a consumed topic that no store holds (accesses) cannot be put back: the records it had
  that this service had not handled are counted in ``carveout_records_lost_total`` and in
  ``/readyz``, never silently. The count is a floor: the ends are read twice a second, so
  records appended in the last moment before the broker died may not be in it.

At start, a topic that is empty while the store says it published to it is put back too
(the service was down while the broker restarted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter, Gauge

from .logread import partitions

log = logging.getLogger("carveout.log_restarts")

RECORDS_LOST = Counter(
    "carveout_records_lost_total",
    "Records that were on a topic, not yet handled by this service, when the embedded "
    "broker restarted empty (they cannot be put back from any store).",
    ["service", "topic"],
)

RESTARTS = Counter(
    "carveout_broker_restarts_total",
    "Times this service found the broker restarted without its log, and put back the "
    "topics its store is the record of.",
    ["service"],
)

LOG_END = Gauge(
    "carveout_log_end_offset",
    "End offset of each partition of the topics this service watches for a broker restart, "
    "as last read (twice a second; of a consumed topic, as its consumer last fetched it).",
    ["service", "topic", "partition"],
)

Restore = Callable[[], Awaitable[int]]
"""Put a topic back from the store; returns how many events will be published again."""

WATCH_EVERY_S = 0.5


def restarted(before: Mapping[int, int], now: Mapping[int, int]) -> bool:
    """Whether a topic restarted from zero: a partition's end offset went down."""
    return any(end < before[p] for p, end in now.items() if p in before)


def lost_records(ends_before: Mapping[int, int], handled_next: Mapping[int, int]) -> int:
    """Records that were on the log (below ``ends_before``) and not handled: only for the
    partitions this service was handling (another replica counts its own)."""
    return sum(
        max(0, ends_before.get(p, 0) - next_offset) for p, next_offset in handled_next.items()
    )


Highwaters = Callable[[], Mapping[int, tuple[int, float]]]
"""Per partition, the end offset a consumer's last fetch reported and when (epoch ms)."""


def fetched_highwaters(subscriber: Any) -> dict[int, tuple[int, float]]:
    """What a FastStream subscriber's consumer last fetched of each partition it holds: the
    partition's end then, and when (no request to the broker)."""
    consumer = getattr(subscriber, "consumer", None)
    if consumer is None:
        return {}
    found = {}
    for tp in consumer.assignment():
        highwater, polled = consumer.highwater(tp), consumer.last_poll_timestamp(tp)
        if highwater is not None and polled is not None:
            found[tp.partition] = (highwater, polled)
    return found


@dataclass
class HandledOffsets:
    """How far this service handled each partition of a topic nothing can put back, and
    how far the log went (its consumer's fetches say it best: some brokers list a
    partition's end as the start of its last batch)."""

    highwaters: Highwaters | None = None
    next_offsets: dict[int, int] = field(default_factory=dict)
    highest: dict[int, int] = field(default_factory=dict)
    since_ms: float = 0.0
    """Fetches before this (the log before a restart) are not the current log's."""

    def handled(self, record: Any) -> None:
        self.handled_all((record,))

    def handled_all(self, records: Iterable[Any]) -> None:
        """A batch in hand: one pass, on the access pipeline's hot path (offsets only grow
        within a partition of a batch, so each record's overwrites the one before)."""
        last: dict[int, int] = {}
        for record in records:
            last[record.partition] = record.offset
        known = self.next_offsets
        for partition, offset in last.items():
            if offset + 1 > known.get(partition, 0):
                known[partition] = offset + 1

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions handed to another replica: theirs to count from now on."""
        for partition in partitions:
            self.next_offsets.pop(partition, None)
            self.highest.pop(partition, None)

    def observe(self, ends: Mapping[int, int]) -> None:
        fetched = self.highwaters() if self.highwaters is not None else {}
        for partition, (highwater, at_ms) in fetched.items():
            if at_ms > self.since_ms:
                ends = {**ends, partition: max(ends.get(partition, 0), highwater)}
        for partition, end in ends.items():
            self.highest[partition] = max(self.highest.get(partition, 0), end)

    def restart(self, now_ms: float) -> int:
        """Forget the old log (the new one starts at zero); returns how many of its records
        were never handled."""
        lost = lost_records(self.highest, self.next_offsets)
        self.next_offsets, self.highest, self.since_ms = {}, {}, now_ms
        return lost


@dataclass(eq=False)
class LogRestartWatch:
    """Watches topics' ends, putting back ``restores`` and counting losses of ``handled``."""

    service: str
    bootstrap: str
    restores: dict[str, Restore] = field(default_factory=dict)
    handled: dict[str, HandledOffsets] = field(default_factory=dict)
    every_s: float = WATCH_EVERY_S
    lost: dict[str, int] = field(default_factory=dict)
    """Records lost per topic since this process started (shown by ``/readyz``)."""
    restarts: int = 0
    _ends: dict[str, dict[int, int]] = field(default_factory=dict)

    pulse: str | None = None
    """A topic that grows all the time (enforcement's heartbeats): watched too, so that a
    restart shows even when the other topics had nothing new."""
    epoch_file: Path | None = None
    """Where ``carveout up`` writes the embedded broker's epoch, new at each start, once its
    topics are made: when given, a new epoch is what tells a restart (ends can grow back
    past what was seen between two looks)."""
    _epoch: str | None = None
    _to_restore: set[str] = field(default_factory=set)

    @property
    def topics(self) -> list[str]:
        pulse = {self.pulse} if self.pulse else set()
        return sorted(self.restores.keys() | self.handled.keys() | pulse)

    async def run(self) -> None:
        """Watch until cancelled; a broker that does not answer is simply asked again."""
        consumer: AIOKafkaConsumer | None = None
        first = True
        try:
            while True:
                try:
                    consumer = consumer or await self._started()
                    ends = await self._read_ends(consumer)
                    await self.check(ends, at_start=first, epoch=self._read_epoch())
                    first = False
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("reading the end offsets failed: %s", exc)
                await asyncio.sleep(self.every_s)
        finally:
            if consumer is not None:
                await consumer.stop()

    async def _started(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _read_ends(self, consumer: Any) -> dict[str, dict[int, int]]:
        ends: dict[str, dict[int, int]] = {}
        for topic in self.topics:
            tps = await partitions(consumer, topic)
            found = await consumer.end_offsets(tps) if tps else {}
            ends[topic] = {tp.partition: offset for tp, offset in found.items()}
        return ends

    def _read_epoch(self) -> str | None:
        if self.epoch_file is None:
            return None
        try:
            return self.epoch_file.read_text().strip() or None
        except OSError:
            return None

    async def check(
        self, ends: Mapping[str, dict[int, int]], *, at_start: bool, epoch: str | None = None
    ) -> None:
        """One look at the topics' ``ends`` (and the broker's ``epoch``, when known). The
        broker restarts all its topics at once, so one that went down means all did: every
        topic a store holds is put back, and what the consumed ones had beyond what was
        handled is counted."""
        seen = {topic: now for topic, now in ends.items() if now}  # absent topics: no news
        if epoch is not None:
            new_epoch = self._epoch is not None and epoch != self._epoch
            self._epoch = epoch
            why = f"its epoch is now {epoch}" if new_epoch else None
        else:
            went_down = [
                t for t, now in seen.items() if t in self._ends and restarted(self._ends[t], now)
            ]
            why = (
                f"{went_down[0]}: {self._ends[went_down[0]]}, then {seen[went_down[0]]}"
                if went_down
                else None
            )
        if why is not None:
            self.restarts += 1
            RESTARTS.labels(self.service).inc()
            log.warning(
                "the broker restarted without its log (%s): putting back %s",
                why,
                sorted(self.restores),
            )
            for topic in self.handled:
                self._count_lost(topic)
            self._ends = {topic: dict(now) for topic, now in seen.items()}
            for topic in self.restores:
                self._to_restore.add(topic)
            await self._restore_pending()
            return
        for topic, now in seen.items():
            shown = now
            if topic in self.handled:
                self.handled[topic].observe(now)
                shown = {**now, **self.handled[topic].highest}
            for partition, end in shown.items():
                LOG_END.labels(self.service, topic, str(partition)).set(end)
            # An end never goes down otherwise: keep the highest seen.
            before = self._ends.get(topic, {})
            self._ends[topic] = {p: max(before.get(p, 0), end) for p, end in now.items()}
            if at_start and topic in self.restores and not any(now.values()):
                self._to_restore.add(topic)
        await self._restore_pending()

    def _count_lost(self, topic: str) -> None:
        lost = self.handled[topic].restart(time.time() * 1000)
        if lost:
            self.lost[topic] = self.lost.get(topic, 0) + lost
            RECORDS_LOST.labels(self.service, topic).inc(lost)
            log.error("%d records of %s were lost with the broker's log", lost, topic)

    async def _restore_pending(self) -> None:
        """Put back each topic waiting for it; one whose store does not answer now (locked,
        down) is tried again at the next look, never forgotten."""
        for topic in sorted(self._to_restore):
            try:
                count = await self.restores[topic]()
            except Exception as exc:
                log.warning("putting %s back failed, trying again: %s", topic, exc)
                continue
            self._to_restore.discard(topic)
            if count:
                log.warning("putting %d events back on %s from the store", count, topic)
