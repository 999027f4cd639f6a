"""The enforcement store on SQLite and PostgreSQL: projection rows and processed marks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from carveout_contracts import codec, topics
from carveout_enforcement.domain import apply
from carveout_enforcement.rows import BreachRow, DecisionRow
from carveout_enforcement.store import DecisionRecord, EnforcementStore
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
NOW = datetime(2026, 7, 1, tzinfo=UTC)


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
    store = EnforcementStore(make_engine(database_url))
    decision = DecisionRow(
        access_event_id="e-1",
        request_id="r-1",
        grantee_id="org-1",
        model_id="m-1",
        grant_id="grt-1",
        grant_version=2,
        decision="deny",
        violations='[{"kind": "purposes"}]',
        occurred_at=1_789_038_299_000_000,
        judged_at=1_789_038_300_000_000,
        user_id="u-1",
        gateway_id="gw-1",
        units=7,
    )
    breach = BreachRow(
        breach_id="brc_1",
        access_event_id="e-1",
        grant_id="grt-1",
        grantee_id="org-1",
        severity="critical",
        occurred_at=decision.occurred_at,
        payload='{"data": {}}',
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    window = ("grt-1", "day", 1_789_000_000)
    store.record_judgements([decision], [breach], {window: 7})
    store.record_judgements([], [], {window: 12})

    [row] = store.page(
        DecisionRecord, grantee_id="org-1", grant_id=None, since=None, until=None, limit=5, offset=0
    ).items
    assert DecisionRow(**row.model_dump()) == decision
    assert store.unpublished_breaches() == [breach]
    assert store.load_usage(0) == {window: 12}
    assert store.decided(["e-1", "e-2"]) == {"e-1"}
