"""Judge ``carveout.access`` a batch at a time: read, dedupe, judge, record, publish breaches.

One batch is one store transaction (decisions, breaches, usage totals); the breaches are
published after it commits and marked published, and the Kafka offsets are committed
after that. A crash anywhere re-delivers the batch: decided accesses are skipped by
``event_id`` and unpublished breaches are published again with the same ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from inspect import isawaitable
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber

from carveout_contracts import PoisonMessage, limits, topics
from carveout_runtime import telemetry
from carveout_runtime.consumers import too_large
from carveout_runtime.retries import (
    ConsumerHealth,
    DependencyUnavailable,
    describe_error,
    retrying,
    unavailable_dependency,
    with_retries,
)

from ..access import Access, read_access, received_at
from ..freshness import GrantsLog
from ..judge import UsageKey
from ..outcomes import judge_slice, span_attributes
from ..settings import EnforcementSettings
from ..store import BreachRecord, EnforcementStore
from .grants import GrantIndex

log = logging.getLogger("carveout.enforcement.access")
SERVICE = "enforcement"

EVENTS = telemetry.EVENTS_CONSUMED

JUDGE_SLICE = 128
"""Accesses judged between two yields to the event loop (a few milliseconds of work)."""

GRANTS_LOG_PAUSE_S = 0.05
"""Between two waits for the grant projection to catch up."""


DeadLetterRecord = Callable[[Any, str, str], Awaitable[None]]


class _Ready:
    """Whether a batch has had its late-grant guard and grant projection wait."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


class AccessPipeline:
    def __init__(
        self,
        store: EnforcementStore,
        index: GrantIndex,
        grants_log: GrantsLog,
        usage: dict[UsageKey, int],
        *,
        publish: Callable[[bytes, str, bytes, str | None], Awaitable[Any]] | None,
        dead_letter: DeadLetterRecord | None,
        retry_attempts: int = 5,
        grants_sync_s: float = 5.0,
        late_grant_guard_s: float = 0.0,
        max_future_skew_s: float = limits.DEFAULT_MAX_FUTURE_SKEW_SECONDS,
        record_max_bytes: int = limits.DEFAULT_RECORD_BYTES,
        health: ConsumerHealth | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.grants_log = grants_log
        self.usage = usage
        self.publish = publish
        self.dead_letter = dead_letter
        self.retry_attempts = retry_attempts
        self.grants_sync_s = grants_sync_s
        self.late_grant_guard_s = late_grant_guard_s
        self.max_future_skew_s = max_future_skew_s
        self.record_max_bytes = record_max_bytes
        self.health = health or ConsumerHealth(SERVICE, topics.ACCESS)
        self.judged = 0
        self.duplicates = 0
        self.unpublished = False

    async def process(self, records: Sequence[Any]) -> None:
        """Judge a batch; dead-letter what is too large, unreadable or keeps failing.

        Only an unavailable store or broker, or a grant projection that is behind, is
        waited for without bound (``health`` shows it); any other failure of the batch is
        tried ``retry_attempts`` times, then the batch is split in halves (see
        :meth:`_bisect`), so that only the accesses that fail on their own are
        dead-lettered ``failed``.
        """
        EVENTS.labels(SERVICE, topics.ACCESS).inc(len(records))
        fresh: dict[str, tuple[Access, int | None]] = {}
        sources: dict[str, Any] = {}  # the record of each access, for its breach's trace
        readable = 0
        wall_clock = time.time()
        for record in records:
            oversize = too_large(record.value, self.record_max_bytes)
            if oversize is not None:
                await self._set_aside(record, "too_large", oversize)
                continue
            try:
                access = read_access(
                    record.value,
                    received_at(record, wall_clock),
                    max_future_skew_s=self.max_future_skew_s,
                )
            except PoisonMessage as poison:
                await self._set_aside(record, poison.reason, poison.error)
                continue
            except Exception as exc:  # reading it can never succeed later: set it aside
                await self._set_aside(record, "invalid", describe_error(exc))
                continue
            readable += 1
            if access.event_id not in fresh:  # a repeat within the batch: the first counts
                fresh[access.event_id] = (access, getattr(record, "timestamp", None))
                sources[access.event_id] = record
        self.duplicates += readable - len(fresh)
        what = f"judging a batch of {len(fresh)} accesses"
        ready = _Ready()
        try:
            self.duplicates += await retrying(
                lambda: self._judge(fresh, sources, ready),
                what=what,
                failures=self.retry_attempts,
                health=self.health,
            )
            return
        except Exception as exc:
            if len(fresh) == 1:
                [event_id] = fresh
                await self._failed(sources[event_id], exc)
                return
            log.warning("%s keeps failing (%s): splitting it to find the culprits", what, exc)
        await self._bisect(list(fresh.items()), sources, ready)

    async def _bisect(
        self,
        items: list[tuple[str, tuple[Access, int | None]]],
        sources: dict[str, Any],
        ready: _Ready,
    ) -> None:
        """Judge a batch that keeps failing by halves, in order: a half that fails is split
        again, down to single accesses, which are dead-lettered ``failed``.

        Each part is tried once (no backoff; an unavailable dependency is still waited
        for) and committed on its own, so one poison access among ``n`` costs about
        ``2·log2(n)`` attempts, well within the consumer's poll interval. The projection
        wait and the late-grant guard done for the batch hold for its parts.
        """
        pending = [items[len(items) // 2 :], items[: len(items) // 2]]  # a stack: left first
        while pending:
            part = pending.pop()
            try:
                self.duplicates += await retrying(
                    partial(self._judge, dict(part), sources, ready),
                    what=f"judging {len(part)} accesses of a failing batch",
                    failures=1,
                    health=self.health,
                )
            except Exception as exc:
                if len(part) == 1:
                    [(event_id, _)] = part
                    await self._failed(sources[event_id], exc)
                else:
                    middle = len(part) // 2
                    pending += [part[middle:], part[:middle]]

    async def _set_aside(self, record: Any, reason: str, error: str) -> None:
        if self.dead_letter is not None:
            await self.dead_letter(record, reason, error)

    async def _failed(self, record: Any, exc: Exception) -> None:
        log.error("an access keeps failing; set aside as failed", exc_info=exc)
        await self._set_aside(record, "failed", describe_error(exc))

    async def _judge(
        self,
        fresh: dict[str, tuple[Access, int | None]],
        sources: dict[str, Any],
        ready: _Ready,
    ) -> int:
        """Judge and record the accesses not decided before; returns how many were.

        The late-grant guard and the projection wait are done once per batch (``ready``):
        the projection only moves forward, so a later attempt or part needs neither.
        """
        decided = await with_retries(
            lambda: self.store.decided(list(fresh)),
            attempts=self.retry_attempts,
            health=self.health,
            what="checking decided accesses",
            in_thread=True,
        )
        todo = [pair for event_id, pair in fresh.items() if event_id not in decided]
        if self.publish is not None and self.unpublished:
            # A publish failed before: its breaches are recorded; send them first.
            await self._publish_recorded(self.publish_pending)
        if not todo:
            return len(fresh)
        if not ready.done:
            await self._let_late_grant_events_land(todo)
            await self._wait_for_grant_projection()
            ready.done = True
        before: dict[UsageKey, int | None] = {}
        decisions: list[tuple[Any, ...]] = []
        breaches: list[dict[str, Any]] = []
        try:
            # Judge a slice at a time and yield in between, so grant events (a revocation)
            # and the decision API are never stuck behind a batch of accesses.
            for start in range(0, len(todo), JUDGE_SLICE):
                judged, found = self.judge_all(todo[start : start + JUDGE_SLICE], before)
                decisions += judged
                breaches += found
                await asyncio.sleep(0)
            for breach in breaches:  # each breach continues the trace of its access
                breach["traceparent"] = telemetry.record_traceparent(
                    sources.get(breach["access_event_id"])
                )
            changed = {key: self.usage[key] for key in before}
            await with_retries(
                lambda: self.store.record_judgements(decisions, breaches, changed),
                attempts=self.retry_attempts,
                health=self.health,
                what="recording decisions",
                in_thread=True,
            )
        except BaseException:
            # Nothing was recorded: put the usage totals back as they were.
            for key, old in before.items():
                if old is None:
                    self.usage.pop(key, None)
                else:
                    self.usage[key] = old
            raise
        self.judged += len(todo)
        if breaches and self.publish is not None:
            self.unpublished = True
            await self._publish_recorded(partial(self.publish_breaches, breaches))
        return len(fresh) - len(todo)

    async def _publish_recorded(self, publish: Callable[[], Awaitable[Any]]) -> None:
        """Publish breaches already recorded. An unavailable broker is waited for (the batch
        is tried again, its breaches sent first); any other failure must not fail a batch
        that is recorded: its breaches wait in the store for :meth:`republish_forever`."""
        try:
            await publish()
        except Exception as exc:
            dependency = unavailable_dependency(exc, "broker")
            if dependency is not None:
                raise DependencyUnavailable(dependency, exc) from exc
            log.error("publishing recorded breaches failed; they will be sent again: %s", exc)
            return
        self.unpublished = False

    async def _wait_for_grant_projection(self) -> None:
        """Wait, without bound, until the grant projection has caught up on the grants log.

        Judging before could report "no grant" for a grant not yet read; meanwhile the
        consumer shows as stalled on the grants log.
        """
        while not await self.grants_log.wait_caught_up(self.grants_sync_s):
            self.health.stall("grants log")
            log.warning(
                "grant projection not caught up within %ss; the batch waits", self.grants_sync_s
            )
            await asyncio.sleep(GRANTS_LOG_PAUSE_S)  # in case the answer came at once
        self.health.recover()

    async def _let_late_grant_events_land(self, todo: Sequence[tuple[Access, int | None]]) -> None:
        """Wait until the newest access is ``late_grant_guard_s`` old, at most that long.

        A regulator action takes effect when the grant service commits it, and reaches
        the log a few milliseconds later. Judging an access that happened in between
        before that event lands would miss it; after the guard, the end offsets read next
        include every action committed before the access happened.
        """
        if self.late_grant_guard_s <= 0:
            return
        newest = max(access.occurred_at for access, _ in todo)
        wait = newest + self.late_grant_guard_s - time.time()
        if wait > 0:
            await asyncio.sleep(min(wait, self.late_grant_guard_s))

    def judge_all(
        self, accesses: Sequence[tuple[Access, int | None]], before: dict[UsageKey, int | None]
    ) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
        """Judge in order, counting usage as it goes; ``before`` keeps the old totals."""
        judged_at = round(time.time() * 1_000_000)
        return judge_slice(
            accesses, self.index.candidates_received_by, self.usage, before, judged_at
        )

    async def publish_breaches(self, rows: Sequence[dict[str, Any] | BreachRecord]) -> None:
        """Publish breach events (keyed by grant, else grantee), then mark them published.

        Each is published with its access's ``traceparent`` (so the breach continues the
        access's trace) and, when tracing is on, inside a span that is a child of the access.
        """
        assert self.publish is not None
        pending = []
        ids: list[str] = []
        for row in rows:
            fields = row if isinstance(row, dict) else row.model_dump()
            key = str(fields["grant_id"] or fields["grantee_id"]).encode()
            traceparent = fields.get("traceparent")
            with telemetry.traced(
                "breach condition.breached",
                traceparent,
                partial(span_attributes, fields),
                link_current=True,  # to the batch's span
            ):
                value = str(fields["payload"]).encode()
                pending.append(await self.publish(value, topics.BREACHES, key, traceparent))
            ids.append(str(fields["breach_id"]))
        for sent in pending:
            if isawaitable(sent):
                await sent
        await with_retries(
            lambda: self.store.mark_breaches_published(ids, datetime.now(UTC)),
            attempts=self.retry_attempts,
            health=self.health,
            what="marking breaches published",
        )

    async def publish_pending(self) -> int:
        """Publish breaches a crash or a failed publish left unpublished; returns how many."""
        total = 0
        while rows := self.store.unpublished_breaches():
            await self.publish_breaches(rows)
            total += len(rows)
        self.unpublished = False
        return total

    async def republish_forever(self, every_s: float = 5.0) -> None:
        """Keep publishing what is left unpublished, so a broker hiccup delays, never loses."""
        while True:
            await asyncio.sleep(every_s)
            try:
                if await self.publish_pending():
                    log.warning("published breaches left over by a failed publish")
            except Exception as exc:
                log.error("publishing left-over breaches failed, will retry: %s", exc)


def subscribe(
    broker: KafkaBroker, pipeline: AccessPipeline, settings: EnforcementSettings
) -> BatchSubscriber:
    async def no_body(message: KafkaMessage) -> None:
        return None

    subscriber = broker.subscriber(
        topics.ACCESS,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        group_id=settings.access_group_id,
        decoder=no_body,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.session_timeout_ms // 6),
        rebalance_timeout_ms=settings.session_timeout_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        title=f"{settings.access_group_id}/{topics.ACCESS}",
        description="Access events from gateways, judged a batch at a time.",
    )

    @subscriber
    async def on_access_batch(body: Any, message: KafkaMessage) -> None:
        records = message.raw_message
        await pipeline.process(records if isinstance(records, tuple | list) else (records,))

    return subscriber
