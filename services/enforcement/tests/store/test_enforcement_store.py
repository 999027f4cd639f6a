"""The enforcement store on SQLite and PostgreSQL: projection rows and processed marks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from carveout_contracts import codec, topics
from carveout_enforcement.domain import apply
from carveout_enforcement.store import EnforcementStore
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
