"""The access pipeline waits for the grant projection, and for nothing else.

Before a batch is judged, the grants log is asked once whether the projection has applied
everything the log held when the batch's accesses were read: those accesses are on the log
already, so every grant event the log received before them is then applied. Which grant
versions cover an access is decided by when the log received each (tested in
``unit/test_late_versions.py``), so waiting any longer for late grant events could change
no decision: a batch that just happened is judged at once. Time here is a clock of the
tests' own, which moves only when told.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carveout_contracts import codec, topics
from carveout_enforcement.domain import apply
from carveout_enforcement.handlers.access import AccessPipeline, PipelineSettings
from carveout_enforcement.handlers.grants import GrantIndex
from carveout_enforcement.outbox import AlreadyPublished
from carveout_enforcement.store import DecisionRecord, EnforcementStore
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
NOW = datetime(2026, 9, 10, 11, 4, 59, 123456, tzinfo=UTC)
"""When each test starts, on its clock."""


class Clock:
    """The tests' clock: it stands still."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now.timestamp()

    def __call__(self) -> float:
        return self.now


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


def make(tmp_path: Path) -> Setup:
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
        settings=PipelineSettings(grants_sync_s=1.0),
        clock=clock,
    )
    return Setup(store, clock, grants_log, pipeline)


def event_id(value: bytes) -> str:
    return str(json.loads(value)["event_id"])


async def test_a_batch_that_just_happened_is_judged_at_once(tmp_path: Path) -> None:
    setup = make(tmp_path)
    value = access(NOW)

    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(value)])

    assert setup.grants_log.asked_at == [NOW.timestamp()]
    assert setup.decisions() == {event_id(value): "allow"}


async def test_a_batch_asks_the_grants_log_once_whatever_its_accesses(tmp_path: Path) -> None:
    """Old accesses, one that just happened and one stamped minutes ahead of the clock
    (a gateway's fast clock, within the allowed skew) are judged together at once."""
    setup = make(tmp_path)
    values = [access(NOW - timedelta(hours=1, seconds=n)) for n in range(3)]
    values += [access(NOW), access(NOW + timedelta(minutes=4))]

    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(v, offset=i) for i, v in enumerate(values)])

    assert setup.grants_log.asked_at == [NOW.timestamp()]
    assert setup.decisions() == {event_id(v): "allow" for v in values}


async def test_a_batch_of_accesses_judged_before_waits_for_nothing(tmp_path: Path) -> None:
    setup = make(tmp_path)
    value = access(NOW)
    async with asyncio.timeout(10):
        await setup.pipeline.process([Record(value)])
        await setup.pipeline.process([Record(value), Record(value)])  # redelivered

    assert len(setup.grants_log.asked_at) == 1
    assert setup.pipeline.duplicates == 2
