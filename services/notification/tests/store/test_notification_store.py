"""The notification store on SQLite and PostgreSQL: grant contacts and processed marks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from carveout_contracts import codec, topics
from carveout_notification.domain import Subscription, apply, new_secret
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


def test_an_event_reads_only_the_subscriptions_that_can_want_it(database_url: str) -> None:
    """The regulator's subscriptions (of no one grant) and the contacts' own of the grants
    the event is about: not every grant's contacts, which grow with every grant issued."""
    store = NotificationStore(make_engine(database_url))

    def subscribe(name: str, grant_id: str | None) -> None:
        store.add_subscription(
            Subscription(
                subscription_id=name,
                channel="webhook",
                address="https://hooks.example/carveout",
                event_types=["*"],
                grant_id=grant_id,
                secret=new_secret(),
            ),
            NOW,
        )

    subscribe("sub_regulator", None)
    for n in range(3):
        subscribe(f"sub_contact_{n}", f"grt_{n}")

    def names(grant_ids: list[str] | None) -> list[str]:
        return sorted(s.subscription_id for s, _ in store.subscriptions_created(grant_ids))

    assert names(["grt_1"]) == ["sub_contact_1", "sub_regulator"]
    assert names([]) == ["sub_regulator"]
    assert names(None) == ["sub_contact_0", "sub_contact_1", "sub_contact_2", "sub_regulator"]
    assert [s.subscription_id for s in store.subscriptions(["sub_contact_2"])] == ["sub_contact_2"]
