"""The notification store on SQLite and PostgreSQL: grant contacts and processed marks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from carveout_contracts import codec, topics
from carveout_notification.domain import apply
from carveout_notification.fanout import EventEffects
from carveout_notification.store import NotificationStore
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
NOW = datetime(2026, 7, 1, tzinfo=UTC)


def test_contacts_and_processed_marks_are_stored(database_url: str) -> None:
    event = codec.decode(topics.GRANTS, (GOLDEN / "grant.issued.v1.json").read_bytes())
    view = apply(None, event, event.data.grant_id)
    assert view is not None
    store = NotificationStore(make_engine(database_url))
    store.record_event(
        EventEffects(contacts=[view], new_subscriptions=[], notifications=[]),
        event_id=str(event.event_id),
        topic=topics.GRANTS,
        at=NOW,
    )

    reopened = NotificationStore(make_engine(database_url))
    assert reopened.is_processed(str(event.event_id))
    assert reopened.get_contacts(event.data.grant_id) == view
    assert reopened.get_contacts("unknown") is None
