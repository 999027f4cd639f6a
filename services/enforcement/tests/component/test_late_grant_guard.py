"""The access pipeline's late-grant guard (``late_grant_guard_s``).

A regulator action takes effect when the grant service commits it and reaches the log a
few milliseconds later. So a batch is judged only once its newest access is
``late_grant_guard_s`` old: the end offsets of the grants log, read next
(``grants_log.wait_caught_up``), then include every action committed before the access
happened. A batch of older accesses is judged at once. The guard here is 50 ms; the tests
bound sleeps from below only, and use deadlines, never sleeps, to wait.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carveout_contracts import codec, topics
from carveout_enforcement.domain import apply
from carveout_enforcement.handlers.access import AccessPipeline
from carveout_enforcement.handlers.grants import GrantIndex
from carveout_enforcement.store import DecisionRecord, EnforcementStore
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
GUARD_S = 0.05
SLACK_S = 0.002
"""Clock resolution: how much earlier than asked a timer may fire."""


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
    """A grants log that is caught up, and notes when the pipeline asked."""

    def __init__(self) -> None:
        self.asked_at: list[float] = []

    async def wait_caught_up(self, within_s: float) -> bool:
        self.asked_at.append(time.time())
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
    grants_log: RecordingGrantsLog
    pipeline: AccessPipeline

    def decisions(self) -> dict[str, str]:
        page = self.store.page(
            DecisionRecord,
            grantee_id=None,
            grant_id=None,
            since=None,
            until=None,
            limit=100,
            offset=0,
        )
        return {d.access_event_id: d.decision for d in page.items}


def make(tmp_path: Path, guard_s: float) -> Setup:
    store = EnforcementStore(make_engine(f"sqlite:///{tmp_path}/enforcement.db"))
    grants_log = RecordingGrantsLog()

    async def publish(value: bytes, topic: str, key: bytes, traceparent: str | None) -> None:
        return None

    pipeline = AccessPipeline(
        store,
        GrantIndex([always_valid_grant()]),
        grants_log,  # type: ignore[arg-type]
        {},
        publish=publish,
        dead_letter=None,
        grants_sync_s=1.0,
        late_grant_guard_s=guard_s,
    )
    return Setup(store, grants_log, pipeline)


def event_id(value: bytes) -> str:
    return str(json.loads(value)["event_id"])


async def test_a_batch_that_just_happened_is_judged_only_after_the_guard(tmp_path: Path) -> None:
    setup = make(tmp_path, GUARD_S)
    now = datetime.now(UTC)
    value = access(now)

    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(value)])

    [asked] = setup.grants_log.asked_at
    assert asked >= now.timestamp() + GUARD_S - SLACK_S
    assert setup.decisions() == {event_id(value): "allow"}


async def test_the_newest_access_of_a_batch_sets_the_wait(tmp_path: Path) -> None:
    setup = make(tmp_path, GUARD_S)
    now = datetime.now(UTC)
    old = [access(now - timedelta(hours=1, seconds=n)) for n in range(3)]
    newest = access(now)

    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(v, offset=i) for i, v in enumerate([*old, newest])])

    [asked] = setup.grants_log.asked_at
    assert asked >= now.timestamp() + GUARD_S - SLACK_S
    assert set(setup.decisions()) == {event_id(v) for v in [*old, newest]}


async def test_a_batch_of_old_accesses_is_not_delayed(tmp_path: Path) -> None:
    guard_s = 3.0  # were it applied, the check below could not pass
    setup = make(tmp_path, guard_s)
    values = [access(datetime.now(UTC) - timedelta(seconds=guard_s + n)) for n in range(5)]
    started = time.time()

    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(v, offset=i) for i, v in enumerate(values)])

    [asked] = setup.grants_log.asked_at
    assert asked - started < guard_s / 2
    assert len(setup.decisions()) == 5


async def test_an_access_stamped_in_the_future_waits_the_guard_and_no_longer(
    tmp_path: Path,
) -> None:
    """A gateway clock minutes ahead (within the allowed skew) does not hold the partition
    for minutes."""
    setup = make(tmp_path, GUARD_S)
    value = access(datetime.now(UTC) + timedelta(minutes=4))
    started = time.time()

    async with asyncio.timeout(10):  # a wait of minutes would end the test here
        await setup.pipeline.process([Record(value)])

    [asked] = setup.grants_log.asked_at
    assert asked >= started + GUARD_S - SLACK_S
    assert setup.decisions() == {event_id(value): "allow"}


async def test_a_batch_of_accesses_judged_before_waits_for_nothing(tmp_path: Path) -> None:
    setup = make(tmp_path, GUARD_S)
    value = access(datetime.now(UTC))
    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(value)])
        await setup.pipeline.process([Record(value), Record(value)])  # redelivered

    assert len(setup.grants_log.asked_at) == 1
    assert setup.pipeline.duplicates == 2


@pytest.mark.parametrize("guard_s", [0.0, -1.0])
async def test_no_guard_means_no_wait(tmp_path: Path, guard_s: float) -> None:
    setup = make(tmp_path, guard_s)
    future = datetime.now(UTC) + timedelta(minutes=4)  # within the allowed skew
    value = access(future)

    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(value)])

    [asked] = setup.grants_log.asked_at
    assert asked < future.timestamp()
    assert setup.decisions() == {event_id(value): "allow"}


async def test_the_service_takes_the_guard_from_its_settings_in_milliseconds(
    start_enforcement: Any,
) -> None:
    async with start_enforcement(late_grant_guard_ms=80) as harness:
        assert harness.app.state.pipeline.late_grant_guard_s == pytest.approx(0.08)
    async with start_enforcement() as harness:
        assert 0 < harness.app.state.pipeline.late_grant_guard_s <= 0.1
