"""The access pipeline's late-grant guard (``late_grant_guard_s``).

A regulator action takes effect when the grant service commits it and reaches the log a
few milliseconds later. So a batch is judged only once its newest access is
``late_grant_guard_s`` old: the end offsets of the grants log, read next
(``grants_log.wait_caught_up``), then include every action committed before the access
happened. A batch of older accesses is judged at once. The guard here is 50 ms, on a clock
of the tests' own: time passes only when the pipeline waits, so every wait is exact and
takes no time.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carveout_contracts import codec, topics
from carveout_enforcement.context import EnforcementContext
from carveout_enforcement.domain import apply
from carveout_enforcement.handlers.access import AccessPipeline, PipelineSettings
from carveout_enforcement.handlers.grants import GrantIndex
from carveout_enforcement.outbox import AlreadyPublished
from carveout_enforcement.store import DecisionRecord, EnforcementStore
from carveout_runtime.composition import context_of
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
GUARD_S = 0.05
NOW = datetime(2026, 9, 10, 11, 4, 59, 123456, tzinfo=UTC)
"""When each test starts, on its clock."""


class Clock:
    """The tests' clock: time passes only when the pipeline sleeps."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now.timestamp()
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Record:
    value: bytes
    offset: int = 0
    topic: str = topics.ACCESS
    partition: int = 0
    key: bytes | None = b"org-netsec"
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int | None = None


class RecordingGrantsLog:
    """A grants log that is caught up, and notes when (on the clock) the pipeline asked."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.asked_at: list[float] = []

    async def wait_caught_up(self, within_s: float) -> bool:
        self.asked_at.append(self.clock())
        return True


def access(occurred_at: datetime) -> bytes:
    """A compliant access of the golden grantee at ``occurred_at`` (microseconds kept)."""
    raw = json.loads((GOLDEN / "access.recorded.v1.json").read_bytes())
    raw["event_id"] = str(uuid.uuid4())
    raw["occurred_at"] = occurred_at.isoformat().replace("+00:00", "Z")
    raw["data"]["user_country"] = "US"
    return json.dumps(raw).encode()


def always_valid_grant() -> Any:
    """The golden grant, valid from long ago to far ahead (accesses "now" are covered)."""
    raw = json.loads((GOLDEN / "grant.issued.v1.json").read_bytes())
    raw["data"]["valid_from"] = "2000-01-01T00:00:00Z"
    raw["data"]["valid_until"] = "2100-01-01T00:00:00Z"
    view = apply(None, codec.decode(topics.GRANTS, json.dumps(raw).encode()), GRANT_ID)
    assert view is not None
    return view


@dataclass
class Setup:
    store: EnforcementStore
    clock: Clock
    grants_log: RecordingGrantsLog
    pipeline: AccessPipeline

    def decisions(self) -> dict[str, str]:
        page = self.store.page(DecisionRecord, limit=100)
        return {d.access_event_id: d.decision for d in page.items}


def make(tmp_path: Path, guard_s: float) -> Setup:
    store = EnforcementStore(make_engine(f"sqlite:///{tmp_path}/enforcement.db"))
    clock = Clock()
    grants_log = RecordingGrantsLog(clock)

    async def set_aside(record: Any, reason: str, error: str) -> None:
        raise AssertionError(f"nothing here is set aside ({reason}: {error})")

    pipeline = AccessPipeline(
        store,
        GrantIndex([always_valid_grant()]),
        grants_log,
        {},
        breaches=AlreadyPublished(),  # every access here is allowed
        set_aside=set_aside,
        settings=PipelineSettings(grants_sync_s=1.0, late_grant_guard_s=guard_s),
        clock=clock,
        sleep=clock.sleep,
    )
    return Setup(store, clock, grants_log, pipeline)


def event_id(value: bytes) -> str:
    return str(json.loads(value)["event_id"])


async def test_a_batch_that_just_happened_is_judged_only_after_the_guard(tmp_path: Path) -> None:
    setup = make(tmp_path, GUARD_S)
    value = access(NOW)

    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(value)])

    [asked] = setup.grants_log.asked_at
    assert setup.clock.slept == [pytest.approx(GUARD_S)]
    assert asked == pytest.approx(NOW.timestamp() + GUARD_S)
    assert setup.decisions() == {event_id(value): "allow"}


async def test_the_newest_access_of_a_batch_sets_the_wait(tmp_path: Path) -> None:
    setup = make(tmp_path, GUARD_S)
    newest = NOW - timedelta(milliseconds=20)
    old = [access(NOW - timedelta(hours=1, seconds=n)) for n in range(3)]

    async with asyncio.timeout(10):
        records = [Record(v, offset=i) for i, v in enumerate([*old, access(newest)])]
        await setup.pipeline.process(records)

    [asked] = setup.grants_log.asked_at
    assert setup.clock.slept == [pytest.approx(GUARD_S - 0.02)]
    assert asked == pytest.approx(newest.timestamp() + GUARD_S)
    assert len(setup.decisions()) == 4


async def test_a_batch_of_old_accesses_is_not_delayed(tmp_path: Path) -> None:
    guard_s = 3.0
    setup = make(tmp_path, guard_s)
    values = [access(NOW - timedelta(seconds=guard_s + n)) for n in range(5)]

    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(v, offset=i) for i, v in enumerate(values)])

    [asked] = setup.grants_log.asked_at
    assert setup.clock.slept == []
    assert asked == NOW.timestamp()
    assert len(setup.decisions()) == 5


async def test_an_access_stamped_in_the_future_waits_the_guard_and_no_longer(
    tmp_path: Path,
) -> None:
    """A gateway clock minutes ahead (within the allowed skew) does not hold the partition
    for minutes."""
    setup = make(tmp_path, GUARD_S)
    value = access(NOW + timedelta(minutes=4))

    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(value)])

    [asked] = setup.grants_log.asked_at
    assert setup.clock.slept == [GUARD_S]
    assert asked == pytest.approx(NOW.timestamp() + GUARD_S)
    assert setup.decisions() == {event_id(value): "allow"}


async def test_a_batch_of_accesses_judged_before_waits_for_nothing(tmp_path: Path) -> None:
    setup = make(tmp_path, GUARD_S)
    value = access(NOW)
    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(value)])
        await setup.pipeline.process([Record(value), Record(value)])  # redelivered

    assert len(setup.grants_log.asked_at) == 1
    assert len(setup.clock.slept) == 1
    assert setup.pipeline.duplicates == 2


@pytest.mark.parametrize("guard_s", [0.0, -1.0])
async def test_no_guard_means_no_wait(tmp_path: Path, guard_s: float) -> None:
    setup = make(tmp_path, guard_s)
    future = NOW + timedelta(minutes=4)  # within the allowed skew
    value = access(future)

    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(value)])

    [asked] = setup.grants_log.asked_at
    assert setup.clock.slept == []
    assert asked < future.timestamp()
    assert setup.decisions() == {event_id(value): "allow"}


async def test_the_service_takes_the_guard_from_its_settings_in_milliseconds(
    start_enforcement: Any,
) -> None:
    async with start_enforcement(late_grant_guard_ms=80) as harness:
        settings = context_of(harness.app, EnforcementContext).pipeline.settings
        assert settings.late_grant_guard_s == pytest.approx(0.08)
    async with start_enforcement() as harness:
        settings = context_of(harness.app, EnforcementContext).pipeline.settings
        assert 0 < settings.late_grant_guard_s <= 0.1


async def test_the_guard_counts_from_the_record_time_not_when_the_access_happened(
    tmp_path: Path,
) -> None:
    """An access that happened an hour ago but was just put on the log (a gateway sending
    late) still waits: a grant event stamped just before the record may not have landed."""
    setup = make(tmp_path, GUARD_S)
    value = access(NOW - timedelta(hours=1))
    stamped = round((NOW.timestamp() - 0.01) * 1000)  # the log took it 10 ms ago

    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(value, timestamp=stamped)])

    [asked] = setup.grants_log.asked_at
    assert setup.clock.slept == [pytest.approx(GUARD_S - 0.01, abs=1e-3)]
    assert asked == pytest.approx(stamped / 1000 + GUARD_S, abs=1e-3)
    assert setup.decisions() == {event_id(value): "allow"}
