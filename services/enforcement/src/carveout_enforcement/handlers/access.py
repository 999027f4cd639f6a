"""Judge ``carveout.access`` a batch at a time: read, dedupe, wait, judge, record, publish.

One batch is one store transaction (decisions, breaches, usage totals). The usage totals
in memory change only once it commits, then its breaches are sent (:mod:`..outbox`), and
the Kafka offsets are committed after that. A crash anywhere re-delivers the batch:
decided accesses are skipped by ``event_id`` and unpublished breaches are published again
with the same ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber

from carveout_contracts import limits, topics
from carveout_runtime import telemetry
from carveout_runtime.consumers import group_options
from carveout_runtime.log_restarts import HandledOffsets
from carveout_runtime.retries import ConsumerHealth, describe_error, retrying, with_retries

from ..access import Arrival, read_batch
from ..clock import Clock, Sleep, system_clock, system_sleep
from ..decision_log import DecisionLog
from ..freshness import ProjectionCatchUp, late_grant_wait
from ..judge import UsageKey
from ..outbox import BreachSink
from ..outcomes import Judgement, judge_batch
from ..ownership import ClaimOnAssignment, PartitionClaims, PartitionTakenOver
from ..rows import BreachRow, DecisionRow
from ..settings import EnforcementSettings
from ..store import EnforcementStore
from .grants import GrantIndex

log = logging.getLogger("carveout.enforcement.access")
SERVICE = "enforcement"


JUDGE_SLICE = 128
"""Accesses judged between two yields to the event loop (a few milliseconds of work)."""

GRANTS_LOG_PAUSE_S = 0.05
"""Between two waits for the grant projection to catch up."""

SetAside = Callable[[Any, str, str], Awaitable[None]]
"""Dead-letter a record that can never be judged, with the reason and the error."""


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """How the access pipeline reads, waits and tries again (from EnforcementSettings)."""

    retry_attempts: int = 5
    """Attempts at a batch that fails (not for want of a dependency) before it is split."""
    grants_sync_s: float = 5.0
    """The longest one wait for the grant projection; it is waited for again after."""
    late_grant_guard_s: float = 0.0
    """How old the newest access of a batch must be before it is judged."""
    max_future_skew_s: float = limits.DEFAULT_MAX_FUTURE_SKEW_SECONDS
    record_max_bytes: int = limits.DEFAULT_RECORD_BYTES

    @classmethod
    def of(cls, settings: EnforcementSettings) -> PipelineSettings:
        return cls(
            retry_attempts=settings.consumer_retry_attempts,
            grants_sync_s=settings.grants_sync_seconds,
            late_grant_guard_s=settings.late_grant_guard_ms / 1000,
            max_future_skew_s=settings.max_future_skew_seconds,
            record_max_bytes=settings.record_max_bytes,
        )


class _Ready:
    """Whether a batch has had its late-grant guard and grant projection wait."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


@dataclass(eq=False)
class AccessPipeline:
    """The consumer of ``carveout.access``: each batch read, deduped, waited for (the
    late-grant guard, the grant projection), judged (:func:`judge_batch`), recorded, its
    usage applied and its breaches sent."""

    store: EnforcementStore
    index: GrantIndex
    grants_log: ProjectionCatchUp
    usage: dict[UsageKey, int]
    """The usage totals decisions read: changed only by batches recorded."""
    breaches: BreachSink
    set_aside: SetAside
    settings: PipelineSettings = PipelineSettings()
    health: ConsumerHealth = field(default_factory=lambda: ConsumerHealth(SERVICE, topics.ACCESS))
    clock: Clock = system_clock
    sleep: Sleep = system_sleep
    decision_log: DecisionLog | None = None
    """Where each batch's decisions are appended as leaves (DESIGN §12), if anywhere."""
    claims: PartitionClaims | None = None
    """This replica's claims on access partitions, which each batch's transaction checks
    (replicas sharing the store); ``None`` where one process judges everything (replay)."""
    handled: HandledOffsets = field(default_factory=HandledOffsets)
    """How far each partition was handled: what a broker restart took beyond is lost."""
    judged: int = field(default=0, init=False)
    duplicates: int = field(default=0, init=False)

    async def process(self, records: Sequence[Any]) -> bool:
        """Judge a batch; dead-letter what is too large, unreadable or keeps failing. Says
        whether the batch is done with: ``False`` when it was left, unrecorded, to the
        partitions' new owner (its offsets must then not be committed).

        Only an unavailable store or broker, or a grant projection that is behind, is
        waited for without bound (``health`` shows it); any other failure of the batch is
        tried ``retry_attempts`` times, then the batch is split in halves (see
        :meth:`_bisect`), so that only the accesses that fail on their own are
        dead-lettered ``failed``.
        """
        batch = read_batch(
            records,
            self.clock(),
            max_future_skew_s=self.settings.max_future_skew_s,
            record_max_bytes=self.settings.record_max_bytes,
        )
        for record, reason, error in batch.set_aside:
            await self.set_aside(record, reason, error)
        self.duplicates += batch.repeats
        fresh, sources = batch.accesses, batch.records
        what = f"judging a batch of {len(fresh)} accesses"
        ready = _Ready()
        try:
            self.duplicates += await retrying(
                lambda: self._judge(fresh, sources, ready),
                what=what,
                failures=self.settings.retry_attempts,
                health=self.health,
            )
            return True
        except PartitionTakenOver as lost:
            _left_to_new_owner(lost)
            return False
        except Exception as exc:
            if len(fresh) == 1:
                [event_id] = fresh
                await self._failed(sources[event_id], exc)
                return True
            log.warning("%s keeps failing (%s): splitting it to find the culprits", what, exc)
        return await self._bisect(list(fresh.items()), sources, ready)

    async def _bisect(
        self, items: list[tuple[str, Arrival]], sources: dict[str, Any], ready: _Ready
    ) -> bool:
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
            except PartitionTakenOver as lost:
                _left_to_new_owner(lost)
                return False
            except Exception as exc:
                if len(part) == 1:
                    [(event_id, _)] = part
                    await self._failed(sources[event_id], exc)
                else:
                    middle = len(part) // 2
                    pending += [part[middle:], part[:middle]]
        return True

    async def _failed(self, record: Any, exc: Exception) -> None:
        log.error("an access keeps failing; set aside as failed", exc_info=exc)
        await self.set_aside(record, "failed", describe_error(exc))

    async def _judge(
        self, fresh: dict[str, Arrival], sources: dict[str, Any], ready: _Ready
    ) -> int:
        """Judge and record the accesses not decided before; returns how many were.

        The late-grant guard and the projection wait are done once per batch (``ready``):
        the projection only moves forward, so a later attempt or part needs neither.
        """
        decided = await with_retries(
            lambda: self.store.decided(list(fresh)),
            attempts=self.settings.retry_attempts,
            health=self.health,
            what="checking decided accesses",
            in_thread=True,
        )
        todo = [arrival for event_id, arrival in fresh.items() if event_id not in decided]
        await self.breaches.send_left_over()  # a send failed before: those go first
        if not todo:
            return len(fresh)
        if not ready.done:
            await self._let_late_grant_events_land(todo)
            await self._wait_for_grant_projection()
            ready.done = True
        judged = await self._judge_in_slices(todo)
        breaches = [_traced(breach, sources) for breach in judged.breaches]
        decisions, placement = judged.decisions, None
        place: Callable[[Any], Sequence[DecisionRow]] | None = None
        if self.decision_log is not None:
            placement = await self.decision_log.prepare(decisions, sources)
            decisions, place = placement.decisions, placement.settle
        fence = None
        if self.claims is not None:
            fence = self.claims.fence({getattr(r, "partition", 0) for r in sources.values()})
        await with_retries(
            lambda: self.store.record_judgements(decisions, breaches, judged.usage, place, fence),
            attempts=self.settings.retry_attempts,
            health=self.health,
            what="recording decisions",
            in_thread=True,
        )
        if self.decision_log is not None and placement is not None:
            self.decision_log.placed(placement)  # committed: the trees follow
        self.usage.update(judged.usage)  # recorded: decisions and later batches count it
        self.judged += len(todo)
        await self.breaches.send(breaches)
        return len(fresh) - len(todo)

    async def _judge_in_slices(self, todo: Sequence[Arrival]) -> Judgement:
        """Judge a slice at a time and yield in between, so grant events (a revocation) and
        the decision API are never stuck behind a batch of accesses."""
        judged_at = round(self.clock() * 1_000_000)
        judged = Judgement()
        for start in range(0, len(todo), JUDGE_SLICE):
            part = todo[start : start + JUDGE_SLICE]
            candidates = self.index.candidates_received_by
            judged.extend(judge_batch(part, candidates, self.usage, judged_at, judged.usage))
            await asyncio.sleep(0)
        return judged

    async def _wait_for_grant_projection(self) -> None:
        """Wait, without bound, until the grant projection has caught up on the grants log.

        Judging before could report "no grant" for a grant not yet read; meanwhile the
        consumer shows as stalled on the grants log.
        """
        within_s = self.settings.grants_sync_s
        while not await self.grants_log.wait_caught_up(within_s):
            self.health.stall("grants log")
            log.warning("grant projection not caught up within %ss; the batch waits", within_s)
            await asyncio.sleep(GRANTS_LOG_PAUSE_S)  # in case the answer came at once
        self.health.recover()

    async def _let_late_grant_events_land(self, todo: Sequence[Arrival]) -> None:
        """Wait until the newest access's record time is ``late_grant_guard_s`` old, at most
        that long.

        A grant version covers the accesses stamped from its own record time on. Where
        producers stamp the records (Tansu), the relay's event stamped just before an access
        can land on the log just after the access is read; once the access's time is the
        guard old, every event stamped before it has landed, and the ends read next take it
        in. (Without a record time, the access's ``occurred_at`` stands in.)
        """
        newest = max(
            access.occurred_at if appended_ms is None else appended_ms / 1000
            for access, appended_ms in todo
        )
        wait = late_grant_wait(newest, self.settings.late_grant_guard_s, self.clock())
        if wait > 0:
            await self.sleep(wait)


def _left_to_new_owner(lost: PartitionTakenOver) -> None:
    """Nothing of the batch was recorded: its new owner judges it from the committed
    offsets, on the store's usage totals."""
    log.warning("batch not recorded: %s; left to the new owner", lost)


def _traced(breach: BreachRow, sources: dict[str, Any]) -> BreachRow:
    """The breach with its access record's ``traceparent``: it continues the access's trace."""
    traceparent = telemetry.record_traceparent(sources.get(breach.access_event_id))
    return msgspec.structs.replace(breach, traceparent=traceparent)


def subscribe(
    broker: KafkaBroker,
    pipeline: AccessPipeline,
    settings: EnforcementSettings,
    claims: ClaimOnAssignment | None = None,
) -> BatchSubscriber:
    """The consumer of ``carveout.access`` in the replicas' group; ``claims`` claims each
    partition assigned to this replica in the store before it is read."""

    async def no_body(message: KafkaMessage) -> None:
        return None

    subscriber: BatchSubscriber = broker.subscriber(
        topics.ACCESS,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        decoder=no_body,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        title=f"{settings.access_group_id}/{topics.ACCESS}",
        description="Access events from gateways, judged a batch at a time.",
        listener=claims,
        **group_options(settings, settings.access_group_id),
    )

    @subscriber
    async def on_access_batch(body: Any, message: KafkaMessage) -> None:
        records = message.raw_message
        batch = records if isinstance(records, tuple | list) else (records,)
        # Counted as handled from now: a batch in hand is judged, whatever the broker does.
        pipeline.handled.handled_all(batch)
        if not await pipeline.process(batch):
            # Left unrecorded to the partitions' new owner: the consumer goes back to the
            # batch's first records and commits nothing past them (a broker that takes a
            # commit from a member it no longer counts would otherwise skip the batch).
            await message.nack()

    return subscriber
