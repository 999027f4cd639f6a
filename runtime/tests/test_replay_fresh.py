"""What every replay shares (``carveout_runtime.replay``): the fresh-store check and
``--since`` as a record timestamp."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from carveout_contracts import topics
from carveout_runtime.digest import CoveredTable
from carveout_runtime.inbound import Inbound
from carveout_runtime.replay import (
    NotAFreshStore,
    ReplayReport,
    fold,
    open_target,
    require_fresh,
    since_ms,
)
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[2] / "contracts" / "golden"

TABLES = ["grants", "decisions", "usage"]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path}/target.db")
    yield made
    made.dispose()


def create(engine: Engine, *tables: str) -> None:
    with engine.begin() as connection:
        for table in tables:
            connection.execute(text(f"CREATE TABLE {table} (id VARCHAR PRIMARY KEY)"))


def test_an_empty_database_is_fresh(engine: Engine) -> None:
    require_fresh(engine, TABLES)


def test_tables_without_rows_are_fresh(engine: Engine) -> None:
    create(engine, *TABLES)
    require_fresh(engine, TABLES)


@pytest.mark.parametrize("table", TABLES)
def test_any_row_in_a_named_table_refuses_the_replay_naming_the_table(
    engine: Engine, table: str
) -> None:
    create(engine, *TABLES)
    with engine.begin() as connection:
        connection.execute(text(f"INSERT INTO {table} VALUES ('x')"))

    with pytest.raises(NotAFreshStore, match=f"'{table}'") as raised:
        require_fresh(engine, TABLES)
    assert "--since" in str(raised.value)
    assert "--database-url" in str(raised.value)


def test_rows_in_tables_the_service_does_not_own_do_not_count(engine: Engine) -> None:
    create(engine, "grants", "alembic_version")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO alembic_version VALUES ('x')"))
    require_fresh(engine, TABLES)


@pytest.mark.postgres
def test_a_postgresql_database_with_rows_is_not_fresh(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        require_fresh(engine, TABLES)
        create(engine, "decisions")
        require_fresh(engine, TABLES)
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO decisions VALUES ('x')"))
        with pytest.raises(NotAFreshStore, match="'decisions'"):
            require_fresh(engine, TABLES)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 6, 28, 14, 0, tzinfo=UTC), 1_782_655_200_000),
        (datetime(2026, 6, 28, 14, 0, 0, 123_999, tzinfo=UTC), 1_782_655_200_123),
        (datetime(2026, 6, 28, 16, 0, tzinfo=timezone(timedelta(hours=2))), 1_782_655_200_000),
        (datetime(1970, 1, 1, tzinfo=UTC), 0),
    ],
)
def test_since_is_the_record_timestamp_in_milliseconds(moment: datetime, expected: int) -> None:
    assert since_ms(moment) == expected


def test_no_since_is_none() -> None:
    assert since_ms(None) is None


def test_a_report_counts_events_over_topics_and_names_its_digest() -> None:
    report = ReplayReport("enforcement", "sqlite:///x.db", records={"a": 3, "b": 4}, poison=1)
    report.seconds = 0.5
    report.digest = {"digest": "d" * 64, "tables": {"t": {"rows": 1}}}

    shown = report.as_json()

    assert report.events == 7
    assert shown["events"] == 7
    assert shown["events_per_s"] == 14
    assert (shown["poison"], shown["skipped"]) == (1, 0)
    assert shown["digest"] == "d" * 64
    assert shown["tables"] == {"t": {"rows": 1}}


# --------------------------------------------------------------------------- open_target


def test_open_target_refuses_a_store_with_data_unless_since_is_given(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/target.db"
    tables = [CoveredTable("decisions", ("id",))]
    engine = open_target(url, None, tables)  # fresh: accepted
    create(engine, "decisions")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO decisions VALUES ('x')"))
    engine.dispose()

    with pytest.raises(NotAFreshStore, match="'decisions'"):
        open_target(url, None, tables)
    again = open_target(url, datetime(2026, 1, 1, tzinfo=UTC), tables)  # catching up a copy
    again.dispose()


# --------------------------------------------------------------------------- fold


@dataclass
class Record:
    topic: str
    value: bytes
    timestamp: int
    offset: int = 0
    partition: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


def event_bytes(event_type: str, event_id: str) -> bytes:
    raw = json.loads((GOLDEN / f"{event_type}.v1.json").read_bytes())
    raw["event_id"] = event_id
    return json.dumps(raw).encode()


async def test_fold_counts_skips_and_hands_over_as_a_live_consumer_would() -> None:
    ids = [str(uuid.uuid4()) for _ in range(4)]
    records = [
        Record(topics.GRANTS, event_bytes("grant.issued", ids[0]), timestamp=100),
        Record(topics.BREACHES, event_bytes("condition.breached", ids[1]), timestamp=100),
        Record(topics.BREACHES, b"{not json", timestamp=300),
        Record(topics.BREACHES, event_bytes("condition.breached", ids[2]), timestamp=300),
        Record(topics.BREACHES, event_bytes("condition.breached", ids[2]), timestamp=301),
        Record(topics.BREACHES, event_bytes("condition.breached", ids[3]), timestamp=302),
    ]
    processed = {ids[3]}  # already in the target store
    seen: list[tuple[str, Inbound]] = []

    async def process(event: Any, inbound: Inbound) -> None:
        seen.append((str(event.event_id), inbound))
        processed.add(str(event.event_id))

    report = ReplayReport("test", "sqlite://")
    await fold(records, report, is_processed=processed.__contains__, process=process, first_ms=200)

    # The grant event before first_ms is folded; the breach before it is not.
    assert [event_id for event_id, _ in seen] == [ids[0], ids[2]]
    for (_, inbound), record in zip(seen, [records[0], records[3]], strict=True):
        assert (inbound.topic, inbound.value, inbound.appended_ms) == (
            record.topic,
            record.value,
            record.timestamp,
        )
        assert inbound.health is None  # a replay waits for nothing without bound
    assert report.records == {topics.GRANTS: 1, topics.BREACHES: 5}
    assert report.poison == 1
    assert report.skipped == 3  # one before first_ms, one repeat, one already stored


async def test_fold_without_since_folds_every_record() -> None:
    ids = [str(uuid.uuid4()) for _ in range(2)]
    records = [
        Record(topics.BREACHES, event_bytes("condition.breached", i), timestamp=1) for i in ids
    ]
    seen: list[str] = []

    async def process(event: Any, _record: Any) -> None:
        seen.append(str(event.event_id))

    report = ReplayReport("test", "sqlite://")
    await fold(records, report, is_processed=lambda _: False, process=process)

    assert seen == ids
    assert (report.poison, report.skipped) == (0, 0)
