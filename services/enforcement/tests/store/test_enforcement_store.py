"""The enforcement store on SQLite and PostgreSQL: projection rows and processed marks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psycopg
import pytest
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from carveout_contracts import codec, topics
from carveout_enforcement.access import read_access
from carveout_enforcement.domain import apply
from carveout_enforcement.handlers.grants import GrantIndex
from carveout_enforcement.outcomes import Judgement, judge_batch
from carveout_enforcement.rows import DecisionRow
from carveout_enforcement.store import DecisionRecord, EnforcementStore
from carveout_runtime.retries import unavailable_dependency
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
NOW = datetime(2026, 7, 1, tzinfo=UTC)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_views_and_processed_marks_survive_a_new_store(database_url: str) -> None:
    event = codec.decode(topics.GRANTS, (GOLDEN / "grant.issued.v1.json").read_bytes())
    view = apply(None, event, event.data.grant_id)
    assert view is not None
    store = EnforcementStore(make_engine(database_url))
    store.save_grants([view], event_id=str(event.event_id), topic=topics.GRANTS, at=NOW)

    reopened = EnforcementStore(make_engine(database_url))
    assert reopened.is_processed(str(event.event_id))
    assert not reopened.is_processed("another")
    [loaded] = list(reopened.load_grants())
    assert loaded == view
    assert json.loads(loaded.model_dump_json())["periods"][0]["version"] == 1


def test_judgements_are_written_by_column_name(database_url: str) -> None:
    """Typed rows land in the columns that bear their fields' names; usage is an upsert."""
    issued = codec.decode(topics.GRANTS, (GOLDEN / "grant.issued.v1.json").read_bytes())
    view = apply(None, issued, issued.data.grant_id)
    assert view is not None
    index = GrantIndex([view])
    access = read_access((GOLDEN / "access.recorded.v1.json").read_bytes(), 2e9)  # in KP
    judged = judge_batch([(access, None)], index.candidates_received_by, {}, judged_at=7)
    [decision], [breach] = judged.decisions, judged.breaches
    traced = msgspec.structs.replace(breach, traceparent=TRACEPARENT)
    [(window, units), *_] = judged.usage.items()

    store = EnforcementStore(make_engine(database_url))
    store.record_judgements([decision], [traced], judged.usage)
    store.record_judgements([], [], {window: units + 5})

    [row] = store.page(DecisionRecord, grantee_id=access.grantee_id).items
    assert DecisionRow(**row.model_dump()) == decision
    assert (row.decision, row.judged_at, row.units) == ("deny", 7, access.units)
    assert store.unpublished_breaches() == [traced]
    assert store.load_usage(0) == {**judged.usage, window: units + 5}
    assert store.decided([access.event_id, "another"]) == {access.event_id}


def _judged_pair() -> tuple[Judgement, Judgement]:
    """Two judgements of the golden access: the same event, and a copy with an id of its own."""
    issued = codec.decode(topics.GRANTS, (GOLDEN / "grant.issued.v1.json").read_bytes())
    view = apply(None, issued, issued.data.grant_id)
    assert view is not None
    index = GrantIndex([view])
    access = read_access((GOLDEN / "access.recorded.v1.json").read_bytes(), 2e9)
    other = msgspec.structs.replace(access, event_id="00000000-0000-4000-8000-00000000a11c")
    first = judge_batch([(access, None)], index.candidates_received_by, {}, judged_at=7)
    both = judge_batch(
        [(other, None), (access, None)], index.candidates_received_by, {}, judged_at=8
    )
    return first, both


def test_a_batch_with_a_decision_already_recorded_records_nothing(database_url: str) -> None:
    """The bulk writes (``COPY`` on PostgreSQL) fail the whole batch on a decision recorded
    before, with SQLAlchemy's ``IntegrityError`` on either store: its transaction leaves
    no decision, breach or usage total behind."""
    first, both = _judged_pair()
    store = EnforcementStore(make_engine(database_url))
    store.record_judgements(first.decisions, first.breaches, first.usage)
    with pytest.raises(IntegrityError):
        store.record_judgements(both.decisions, both.breaches, both.usage)
    assert store.decided([d.access_event_id for d in both.decisions]) == {
        first.decisions[0].access_event_id
    }
    assert store.unpublished_breaches() == list(first.breaches)
    assert store.load_usage(0) == first.usage


def test_a_connection_lost_while_recording_is_the_store_unavailable(postgres_url: str) -> None:
    """A PostgreSQL connection killed in the middle of a batch's ``COPY`` reaches the
    retries as an unavailable store (waited for, never a failed batch); the next attempt
    records the batch on a new connection."""
    _, both = _judged_pair()
    store = EnforcementStore(make_engine(postgres_url))

    def killed(connection: Connection) -> None:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    with pytest.raises(DBAPIError) as lost:
        store.record_judgements(both.decisions, both.breaches, both.usage, fence=killed)
    assert unavailable_dependency(lost.value) == "store"
    assert store.decided([d.access_event_id for d in both.decisions]) == set()
    store.record_judgements(both.decisions, both.breaches, both.usage)
    assert len(store.decided([d.access_event_id for d in both.decisions])) == 2
