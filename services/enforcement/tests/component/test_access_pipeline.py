"""The access pipeline on a real SQLite store, without Kafka: read, dedupe, judge, record,
publish (DESIGN §5: at-least-once in, exactly-once effects; poison to dead letters;
transient store failures retried; no false no_active_grant)."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from carveout_contracts import ConditionBreached, codec, topics
from carveout_enforcement.domain import GrantView, apply
from carveout_enforcement.handlers.access import AccessPipeline, PipelineSettings
from carveout_enforcement.handlers.grants import GrantIndex
from carveout_enforcement.judge import breach_id
from carveout_enforcement.outbox import BreachOutbox
from carveout_enforcement.rows import DecisionRow
from carveout_enforcement.store import DecisionRecord, EnforcementStore
from carveout_runtime import retries
from carveout_runtime.stores import make_engine

from .conftest import failing

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"  # the golden grant, for org-netsec
GOLDEN_ACCESS: dict[str, Any] = json.loads((GOLDEN / "access.recorded.v1.json").read_bytes())
DAY_START = int(datetime(2026, 9, 10, tzinfo=UTC).timestamp())
HOUR_START = int(datetime(2026, 9, 10, 11, tzinfo=UTC).timestamp())


@dataclass
class Record:
    """What the pipeline reads of an aiokafka ``ConsumerRecord``."""

    value: bytes | None
    topic: str = topics.ACCESS
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"org-netsec"
    headers: tuple[tuple[str, bytes], ...] = ()


def access_bytes(
    event_id: str | None = None, occurred_at: str = "2026-09-10T11:04:59Z", **data: Any
) -> bytes:
    """The golden access (a user in KP: a critical breach), changed as asked."""
    payload = json.loads(json.dumps(GOLDEN_ACCESS))
    payload["event_id"] = event_id or str(uuid.uuid4())
    payload["occurred_at"] = occurred_at
    payload["data"].update(data)
    return json.dumps(payload).encode()


def compliant(event_id: str | None = None, **data: Any) -> bytes:
    return access_bytes(event_id, **{"user_country": "US", **data})


def golden_view() -> GrantView:
    issued = codec.decode(topics.GRANTS, (GOLDEN / "grant.issued.v1.json").read_bytes())
    view = apply(None, issued, GRANT_ID)
    assert view is not None
    return view


def capped_view(units: int, window: str = "hour") -> GrantView:
    """The golden grant with a single, critical usage cap."""
    raw = golden_view().model_dump()
    raw["periods"][0]["conditions"] = [
        {"id": "cap", "kind": "usage_cap", "units": units, "window": window}
    ]
    return GrantView.model_validate(raw)


class CaughtUp:
    """A grants log that is always caught up (the projection is given in full)."""

    def __init__(self, on_wait: Callable[[], None] | None = None, answer: bool = True) -> None:
        self.waits = 0
        self.on_wait = on_wait
        self.answer = answer

    async def wait_caught_up(self, within_s: float) -> bool:
        self.waits += 1
        if self.on_wait is not None:
            self.on_wait()
        return self.answer


@dataclass
class Sent:
    value: bytes
    topic: str
    key: bytes
    traceparent: str | None = None

    @property
    def event(self) -> ConditionBreached:
        decoded: ConditionBreached = codec.decode(topics.BREACHES, self.value)
        return decoded


@dataclass
class World:
    tmp_path: Path
    index: GrantIndex
    grants_log: CaughtUp = field(default_factory=CaughtUp)
    published: list[Sent] = field(default_factory=list)
    dead: list[tuple[Any, str, str]] = field(default_factory=list)
    fail_publishes: int = 0
    fail_with: type[Exception] = ConnectionError
    store: EnforcementStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = self.open_store()

    def open_store(self, name: str = "enforcement.db") -> EnforcementStore:
        return EnforcementStore(make_engine(f"sqlite:///{self.tmp_path}/{name}"))

    async def publish(
        self, value: bytes, topic: str, key: bytes, traceparent: str | None = None
    ) -> None:
        if self.fail_publishes:
            self.fail_publishes -= 1
            raise self.fail_with("the broker is unreachable")
        self.published.append(Sent(value, topic, key, traceparent))

    async def dead_letter(self, record: Any, reason: str, error: str) -> None:
        self.dead.append((record, reason, error))

    def pipeline(
        self,
        store: EnforcementStore | None = None,
        usage: dict[Any, int] | None = None,
        retry_attempts: int = 3,
    ) -> AccessPipeline:
        store = store or self.store
        outbox = self.outbox(store, retry_attempts)
        return AccessPipeline(
            store,
            self.index,
            self.grants_log,
            store.load_usage(0) if usage is None else usage,
            breaches=outbox,
            set_aside=self.dead_letter,
            settings=PipelineSettings(retry_attempts=retry_attempts, grants_sync_s=0.1),
            health=outbox.health,
        )

    def outbox(
        self, store: EnforcementStore | None = None, retry_attempts: int = 3
    ) -> BreachOutbox:
        """The live breach outbox, on the access consumer's health (a pipeline's, or its own)."""
        health = retries.ConsumerHealth("enforcement", topics.ACCESS)
        return BreachOutbox(
            store or self.store, self.publish, retry_attempts=retry_attempts, health=health
        )

    def decisions(self, store: EnforcementStore | None = None) -> list[DecisionRecord]:
        page = self.page(store)
        assert page.total == len(page.items)
        return list(page.items)

    def decision_count(self, store: EnforcementStore | None = None) -> int:
        total: int = self.page(store).total
        return total

    def page(self, store: EnforcementStore | None = None) -> Any:
        return (store or self.store).page(DecisionRecord, limit=1000)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, GrantIndex([golden_view()]))


def event_id_of(value: bytes) -> str:
    return str(json.loads(value)["event_id"])


# --------------------------------------------------------------------------- exactly-once effects


async def test_the_same_event_a_thousand_times_in_one_batch_is_judged_once(world: World) -> None:
    value = access_bytes()
    pipeline = world.pipeline()
    await pipeline.process([Record(value, offset=i) for i in range(1000)])

    [decision] = world.decisions()
    assert decision.access_event_id == event_id_of(value)
    assert decision.decision == "deny"
    [sent] = world.published
    assert (sent.topic, sent.key) == (topics.BREACHES, GRANT_ID.encode())
    breach = sent.event.data
    assert str(breach.access_event_id) == event_id_of(value)
    assert breach.breach_id == breach_id(event_id_of(value), GRANT_ID, 1)
    assert {v.condition_id for v in breach.violations} == {"countries", "embargo"}
    assert world.store.unpublished_breaches() == []
    assert world.store.load_usage(0)[(GRANT_ID, "day", DAY_START)] == 5120
    assert pipeline.judged == 1


async def test_the_same_event_across_batches_and_restarts_is_judged_once(world: World) -> None:
    value = access_bytes()
    first = world.pipeline()
    for _ in range(4):
        await first.process([Record(value)] * 250)
    second = world.pipeline()  # a restart: nothing in memory, the store remembers
    await second.process([Record(value)] * 10)

    assert len(world.decisions()) == 1
    assert len(world.published) == 1
    assert world.store.load_usage(0)[(GRANT_ID, "hour", HOUR_START)] == 5120
    assert (first.judged, second.judged) == (1, 0)
    assert world.grants_log.waits == 1  # nothing to judge, nothing to wait for


async def test_duplicates_mixed_with_new_events_are_dropped_one_by_one(world: World) -> None:
    a, b, c, d = (compliant(units=10) for _ in range(4))
    pipeline = world.pipeline()
    await pipeline.process([Record(x) for x in (a, b, a, c, b, a)])
    await pipeline.process([Record(x) for x in (c, d, a)])
    assert sorted(r.access_event_id for r in world.decisions()) == sorted(
        event_id_of(x) for x in (a, b, c, d)
    )
    assert world.published == []  # all compliant
    assert world.store.load_usage(0)[(GRANT_ID, "day", DAY_START)] == 40


# --------------------------------------------------------------------------- poison


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{this is not json", "bad_json"),
        (access_bytes().replace(b'"access.recorded"', b'"access.erased"'), "unknown_type"),
        (access_bytes().replace(b'"version": 1', b'"version": 2'), "unsupported_version"),
        (access_bytes(units=-5), "invalid"),
    ],
    ids=["bad_json", "unknown_type", "unsupported_version", "invalid"],
)
async def test_poison_is_dead_lettered_and_the_next_access_is_judged(
    world: World, value: bytes, reason: str
) -> None:
    poison = Record(value, offset=7)
    valid = compliant()
    await world.pipeline().process([poison, Record(valid, offset=8)])

    [(record, why, error)] = world.dead
    assert record is poison  # with its source position, for the dead-letter event
    assert why == reason
    assert error
    assert [d.access_event_id for d in world.decisions()] == [event_id_of(valid)]


async def test_non_json_and_unknown_type_each_give_one_dead_letter(world: World) -> None:
    bad_json = Record(b"\x00\xffnot json", offset=1)
    unknown = Record(access_bytes().replace(b'"access.recorded"', b'"access.erased"'), offset=2)
    valid = access_bytes(user_country="US")
    await world.pipeline().process([bad_json, unknown, Record(valid, offset=3)])
    assert [(r.offset, why) for r, why, _ in world.dead] == [(1, "bad_json"), (2, "unknown_type")]
    assert "access.erased" in world.dead[1][2]
    [decision] = world.decisions()
    assert (decision.access_event_id, decision.decision) == (event_id_of(valid), "allow")


# --------------------------------------------------------------------------- trace context


async def test_each_breach_continues_the_trace_of_its_access_even_after_a_crash(
    world: World,
) -> None:
    """A breach is published with its access record's ``traceparent``, kept in the outbox."""
    traced = [f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01" for _ in range(2)]
    values = [access_bytes(), access_bytes()]
    records = [
        Record(value, offset=i, headers=(("traceparent", tp.encode()),))
        for i, (value, tp) in enumerate(zip(values, traced, strict=True))
    ]
    world.fail_publishes, world.fail_with = 1, RuntimeError  # as good as a crash
    await world.pipeline().process([*records, Record(compliant(), offset=2)])
    assert {row.traceparent for row in world.store.unpublished_breaches()} == set(traced)
    assert await world.outbox().publish_pending() == 2  # after a restart
    by_access = {str(sent.event.data.access_event_id): sent for sent in world.published}
    for value, tp in zip(values, traced, strict=True):
        assert by_access[event_id_of(value)].traceparent == tp


# --------------------------------------------------------------------------- crash, then publish


async def test_a_crash_between_recording_and_publishing_is_repaired_by_publish_pending(
    world: World, tmp_path: Path
) -> None:
    value = access_bytes()
    world.fail_publishes, world.fail_with = 1, RuntimeError  # as good as a crash
    crashed = world.pipeline()
    await crashed.process([Record(value)])
    # the judgement is recorded; its breach waits in the outbox
    assert len(world.decisions()) == 1
    [pending] = world.store.unpublished_breaches()
    assert world.published == []

    restarted = world.pipeline()
    assert isinstance(restarted.breaches, BreachOutbox)
    assert await restarted.breaches.publish_pending() == 1
    [sent] = world.published
    assert sent.event.data.breach_id == pending.breach_id
    assert world.store.unpublished_breaches() == []
    assert await restarted.breaches.publish_pending() == 0
    await restarted.process([Record(value)])  # the batch redelivered after the restart
    assert len(world.published) == 1

    # the same access judged in another store, without a crash, gives the same event
    control = World(tmp_path, world.index)
    control.store = control.open_store("control.db")
    await control.pipeline().process([Record(value)])
    [clean] = control.published
    assert sent.event.data.breach_id == clean.event.data.breach_id
    assert sent.event.event_id == clean.event.event_id
    assert sent.value == clean.value
    assert sent.key == clean.key


async def test_a_publish_refused_by_an_unavailable_broker_is_tried_again(
    world: World,
) -> None:
    """No restart or redelivery needed: the batch is tried again, finds its access decided,
    and its breach goes out once (in an earlier version it waited for the next start-up)."""
    value = access_bytes()
    world.fail_publishes = 2
    pipeline = world.pipeline()
    await pipeline.process([Record(value)])
    assert len(world.published) == 1
    assert world.store.unpublished_breaches() == []
    assert len(world.decisions()) == 1
    assert world.dead == []
    assert pipeline.health.describe() is None


async def test_a_publish_that_fails_otherwise_leaves_the_batch_done_and_the_breach_pending(
    world: World,
) -> None:
    """A recorded batch is not tried again, nor dead-lettered, for its publish: the breach
    waits in the store and the next batch (or the republisher) sends it."""
    value = access_bytes()
    world.fail_publishes, world.fail_with = 1, RuntimeError
    pipeline = world.pipeline()
    await pipeline.process([Record(value)])
    assert world.dead == []
    assert len(world.store.unpublished_breaches()) == 1
    await pipeline.process([Record(compliant())])
    assert len(world.published) == 1
    assert world.store.unpublished_breaches() == []


# --------------------------------------------------------------------------- usage


async def test_usage_totals_persist_into_a_new_pipeline(world: World) -> None:
    world.index = GrantIndex([capped_view(1000, "hour")])
    first = world.pipeline()
    await first.process([Record(compliant(units=400)), Record(compliant(units=400))])
    assert [d.decision for d in world.decisions()] == ["allow", "allow"]
    assert world.store.load_usage(0)[(GRANT_ID, "hour", HOUR_START)] == 800

    second = world.pipeline()  # usage loaded from the store
    assert second.usage[(GRANT_ID, "hour", HOUR_START)] == 800
    late = compliant(units=300)
    await second.process([Record(late)])
    [sent] = world.published
    [violation] = sent.event.data.violations
    assert (violation.condition_id, violation.kind) == ("cap", "usage_cap")
    assert violation.actual == {"units": 1100, "window_start": "2026-09-10T11:00:00+00:00"}
    denied = next(d for d in world.decisions() if d.access_event_id == event_id_of(late))
    assert denied.decision == "deny"


async def test_usage_counts_every_access_of_a_batch_in_order(world: World) -> None:
    world.index = GrantIndex([capped_view(1000, "hour")])
    values = [compliant(units=400) for _ in range(3)]
    await world.pipeline().process([Record(v) for v in values])
    by_id = {d.access_event_id: d.decision for d in world.decisions()}
    assert [by_id[event_id_of(v)] for v in values] == ["allow", "allow", "deny"]


# --------------------------------------------------------------------------- store failures


async def test_a_transient_store_failure_is_retried(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = world.store
    monkeypatch.setattr(store, "record_judgements", failing(store.record_judgements, 2))
    value = access_bytes()
    pipeline = world.pipeline(retry_attempts=3)
    await pipeline.process([Record(value)])
    assert [d.access_event_id for d in world.decisions()] == [event_id_of(value)]
    assert len(world.published) == 1
    assert store.load_usage(0)[(GRANT_ID, "day", DAY_START)] == 5120
    assert pipeline.usage[(GRANT_ID, "day", DAY_START)] == 5120


@pytest.mark.usefixtures("quick_retries")
async def test_an_unavailable_store_is_waited_for_without_bound_and_counts_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Far more store failures than retry attempts: an unavailable store is no reason to
    set an access aside; it is recorded and counted once when the store is back, and the
    consumer shows as stalled meanwhile."""
    store = world.store
    real = store.record_judgements
    seen: list[str | None] = []

    def unavailable_then_back(*args: Any, **kwargs: Any) -> Any:
        seen.append(pipeline.health.describe())
        if len(seen) <= 12:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "record_judgements", unavailable_then_back)
    value = access_bytes()
    pipeline = world.pipeline(retry_attempts=2)
    await pipeline.process([Record(value)])
    assert world.dead == []
    assert seen[0] is None
    assert all(s is not None and s.startswith("stalled: store unavailable") for s in seen[1:])
    assert pipeline.health.describe() is None  # back to work
    assert len(world.decisions()) == 1
    assert len(world.published) == 1
    assert pipeline.usage[(GRANT_ID, "day", DAY_START)] == 5120  # counted once
    assert store.load_usage(0)[(GRANT_ID, "day", DAY_START)] == 5120


@pytest.mark.usefixtures("quick_retries")
async def test_an_access_that_keeps_failing_is_dead_lettered_and_the_rest_judged_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-transient failure: the batch is tried retry_attempts times, then by halves;
    only the failing one is set aside (failed, with the error)."""
    store = world.store
    real = store.record_judgements
    bad = access_bytes()
    bad_id = event_id_of(bad)
    calls = {"n": 0}

    def refuses_one(decisions: list[DecisionRow], *args: Any) -> Any:
        calls["n"] += 1
        if any(d.access_event_id == bad_id for d in decisions):
            raise ValueError("this access breaks the store code")
        return real(decisions, *args)

    monkeypatch.setattr(store, "record_judgements", refuses_one)
    good = [compliant(), access_bytes(), compliant()]
    records = [Record(good[0], offset=0), Record(bad, offset=1)]
    records += [Record(v, offset=n) for n, v in enumerate(good[1:], start=2)]
    pipeline = world.pipeline(retry_attempts=3)
    await pipeline.process(records)
    [(record, reason, error)] = world.dead
    assert (record.offset, reason) == (1, "failed")
    assert error == "ValueError: this access breaks the store code"
    assert sorted(d.access_event_id for d in world.decisions()) == sorted(
        event_id_of(v) for v in good
    )
    # the batch thrice; then [good0, bad] fails, [good0] and [bad] once each, [good1, good2]
    assert calls["n"] == 3 + 1 + 2 + 1
    assert pipeline.judged == len(good)
    assert len(world.published) == 1  # the good access in KP, once
    # the failed attempts left no usage behind
    assert pipeline.usage[(GRANT_ID, "day", DAY_START)] == sum(
        json.loads(v)["data"]["units"] for v in good
    )


@pytest.mark.usefixtures("quick_retries")
async def test_one_poison_access_in_a_large_batch_costs_few_attempts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One access among 200 that fails on processing: the batch is split in halves rather
    than tried an access at a time with backoff (which outlasted Kafka's poll interval,
    so the batch came back and was dead-lettered again, forever). Only that access is
    dead-lettered, once; every other is judged once, and the grant projection waited
    for once."""
    store = world.store
    real_record, real_decided = store.record_judgements, store.decided
    values = [compliant(units=1) for _ in range(200)]
    bad_id = event_id_of(values[137])
    recorded: list[str] = []
    calls = {"record": 0, "decided": 0}

    def refuses_one(decisions: list[DecisionRow], *args: Any) -> Any:
        calls["record"] += 1
        if any(d.access_event_id == bad_id for d in decisions):
            raise ValueError("this access breaks the store code")
        result = real_record(decisions, *args)
        recorded.extend(d.access_event_id for d in decisions)
        return result

    def counted(event_ids: list[str]) -> Any:
        calls["decided"] += 1
        return real_decided(event_ids)

    monkeypatch.setattr(store, "record_judgements", refuses_one)
    monkeypatch.setattr(store, "decided", counted)
    pipeline = world.pipeline(retry_attempts=3)
    await pipeline.process([Record(v, offset=n) for n, v in enumerate(values)])

    [(record, reason, error)] = world.dead
    assert (record.offset, reason) == (137, "failed")
    assert error == "ValueError: this access breaks the store code"
    good = [event_id_of(v) for v in values if event_id_of(v) != bad_id]
    assert sorted(recorded) == sorted(good)  # each recorded exactly once
    assert sorted(d.access_event_id for d in world.decisions()) == sorted(good)
    assert pipeline.judged == len(good)
    assert pipeline.usage[(GRANT_ID, "day", DAY_START)] == len(good)  # no failed attempt counted
    assert store.load_usage(0)[(GRANT_ID, "day", DAY_START)] == len(good)
    # the batch thrice, then two halves per level down to the bad access: O(log n)
    bound = 3 + 2 * math.ceil(math.log2(len(values)))
    assert calls["record"] <= bound
    assert calls["decided"] <= bound
    assert world.grants_log.waits == 1
    assert world.published == []

    await pipeline.process([Record(v, offset=n) for n, v in enumerate(values)])  # redelivered
    assert len(world.dead) == 2  # the poison again, alone
    assert sorted(recorded) == sorted(good)


async def test_a_record_over_the_size_limit_is_dead_lettered_unread(world: World) -> None:
    pipeline = world.pipeline()
    pipeline.settings = replace(pipeline.settings, record_max_bytes=64 * 1024)
    huge = b"{" + b" " * (64 * 1024) + b"}"
    valid = compliant()
    await pipeline.process([Record(huge, offset=7), Record(valid, offset=8)])
    [(record, reason, error)] = world.dead
    assert (record.offset, reason) == (7, "too_large")
    assert "65538 bytes" in error and "65536" in error
    assert [d.access_event_id for d in world.decisions()] == [event_id_of(valid)]


async def test_a_failing_duplicate_check_is_retried(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(world.store, "decided", failing(world.store.decided, 1))
    await world.pipeline(retry_attempts=2).process([Record(compliant())])
    assert len(world.decisions()) == 1


# --------------------------------------------------------------------------- the grants log


async def test_the_pipeline_waits_for_the_grant_projection_before_judging(
    tmp_path: Path,
) -> None:
    """An access must not be found without a grant merely because the grant is still unread."""
    index = GrantIndex()
    world = World(tmp_path, index, CaughtUp(on_wait=lambda: index.put(golden_view())))
    value = compliant()
    await world.pipeline().process([Record(value)])
    [decision] = world.decisions()
    assert (decision.decision, decision.grant_id) == ("allow", GRANT_ID)
    assert world.published == []


async def test_no_false_no_active_grant_when_the_projection_cannot_catch_up(
    tmp_path: Path,
) -> None:
    """A projection still behind after grants_sync_s: the batch waits, without bound and
    shown as stalled, rather than being judged 'no grant' (this judged and breached in an
    earlier version) or set aside."""
    index = GrantIndex()
    grants_log = CaughtUp(answer=False)
    asked_thrice = asyncio.Event()
    grants_log.on_wait = lambda: asked_thrice.set() if grants_log.waits >= 3 else None
    world = World(tmp_path, index, grants_log)
    value = compliant()
    pipeline = world.pipeline()
    judging = asyncio.create_task(pipeline.process([Record(value)]))
    await asyncio.wait_for(asked_thrice.wait(), 5)
    assert not judging.done()
    assert (pipeline.health.describe() or "").startswith("stalled: grants log unavailable")
    assert world.published == []
    assert world.decisions() == []
    assert pipeline.usage == {}

    index.put(golden_view())  # the projection catches up
    grants_log.answer = True
    await asyncio.wait_for(judging, 5)
    [decision] = world.decisions()
    assert (decision.decision, decision.grant_id) == ("allow", GRANT_ID)
    assert pipeline.health.describe() is None
    assert world.dead == []


# --------------------------------------------------------------------------- regressions
# Each of these stalled a partition, repeated an effect or miscounted in an earlier version.


@pytest.mark.parametrize("missing", ["event_id", "occurred_at"])
async def test_an_event_without_event_id_or_occurred_at_is_dead_lettered(
    world: World, missing: str
) -> None:
    """A default (a random id, 'now') would make every redelivery a new access."""
    payload = json.loads(access_bytes())
    del payload[missing]
    value = json.dumps(payload).encode()
    pipeline = world.pipeline()
    await pipeline.process([Record(value)])
    await pipeline.process([Record(value)])  # redelivered
    assert [why for _, why, _ in world.dead] == ["invalid", "invalid"]
    assert world.decisions() == []
    assert world.published == []


async def test_units_beyond_exact_json_numbers_are_dead_lettered(world: World) -> None:
    huge, valid = compliant(units=2**63), compliant()
    await world.pipeline(retry_attempts=1).process([Record(huge), Record(valid)])
    assert [why for _, why, _ in world.dead] == ["invalid"]
    assert [d.access_event_id for d in world.decisions()] == [event_id_of(valid)]


async def test_usage_totals_never_overflow_the_store(world: World) -> None:
    """1,100 accesses of the largest units allowed add up past 2**63."""
    most = 2**53 - 1
    values = [compliant(units=most) for _ in range(1100)]
    pipeline = world.pipeline(retry_attempts=1)
    await pipeline.process([Record(v) for v in values])
    assert world.decision_count() == 1100
    total = world.store.load_usage(0)[(GRANT_ID, "day", DAY_START)]
    assert 500 * most < total < 2**63  # saturated, far past any cap
    await pipeline.process([Record(compliant(units=most))])
    assert world.store.load_usage(0)[(GRANT_ID, "day", DAY_START)] < 2**63


async def test_an_out_of_range_timestamp_is_dead_lettered(world: World) -> None:
    bad = access_bytes(occurred_at="0001-01-01T00:00:00+01:00", user_id=" u-1")
    valid = compliant()
    await world.pipeline().process([Record(bad), Record(valid)])
    assert [why for _, why, _ in world.dead] == ["invalid"]
    assert len(world.decisions()) == 1


async def test_dead_letters_are_not_counted_as_duplicates(world: World) -> None:
    value = compliant()
    pipeline = world.pipeline()
    await pipeline.process([Record(b"not json"), Record(value), Record(value)])
    assert (pipeline.judged, pipeline.duplicates) == (1, 1)


async def test_an_impossible_time_is_dead_lettered(world: World) -> None:
    bad = access_bytes(occurred_at="2026-13-01T00:00:00Z")
    valid = compliant()
    await world.pipeline().process([Record(bad), Record(valid)])
    assert [why for _, why, _ in world.dead] == ["invalid"]
    assert [d.access_event_id for d in world.decisions()] == [event_id_of(valid)]
