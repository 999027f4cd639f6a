"""A regulator's subscription hears of what the log received from its creation on; a grant
contact's own subscription hears of every event about its grant.

Which events a subscription hears of is decided by record timestamps (the record being
consumed, the handler's ``Inbound``), so the live service and a replay queue the same
notifications however late either reads the log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carveout_contracts import codec, topics
from carveout_notification.domain import Subscription, new_secret
from carveout_notification.handlers.grants import Notifier
from carveout_notification.store import NotificationStore
from carveout_runtime.inbound import Inbound
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"  # the golden grant, for org-netsec
SUBSCRIBED = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
SUBSCRIBED_MS = int(SUBSCRIBED.timestamp() * 1000)


@dataclass
class Record:
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()


def golden(event_type: str) -> Any:
    raw = json.loads((GOLDEN / f"{event_type}.v1.json").read_bytes())
    raw["event_id"] = str(uuid.uuid4())
    return codec.decode(
        topics.BREACHES if "breach" in event_type else topics.GRANTS, json.dumps(raw).encode()
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NotificationStore]:
    made = NotificationStore(make_engine(f"sqlite:///{tmp_path}/notification.db"))
    yield made
    made.engine.dispose()


def regulator(store: NotificationStore, grantee_id: str | None = None) -> str:
    subscription = Subscription(
        subscription_id="sub_" + uuid.uuid4().hex,
        channel="webhook",
        address="https://regulator.example/hook",
        event_types=["*"],
        grantee_id=grantee_id,
        secret=new_secret(),
    )
    store.add_subscription(subscription, SUBSCRIBED)
    return subscription.subscription_id


async def consume(notifier: Notifier, event: Any, appended_ms: int | None) -> None:
    await notifier(event, Inbound.at(appended_ms))


def heard(store: NotificationStore, subscription_id: str) -> list[str]:
    items, _ = store.notifications(subscription_id=subscription_id, limit=100)
    return sorted(n.event_type for n in items)


def contact_subscription(store: NotificationStore) -> str:
    [contact] = [s for s in store.subscriptions() if s.grant_id == GRANT_ID]
    return contact.subscription_id


async def test_a_regulator_hears_only_of_what_the_log_received_after_it_subscribed(
    store: NotificationStore,
) -> None:
    everything, of_grantee = regulator(store), regulator(store, grantee_id="org-netsec")
    notifier = Notifier(store, retry_attempts=1)

    await consume(notifier, golden("grant.issued"), SUBSCRIBED_MS - 1)
    await consume(notifier, golden("grant.suspended"), SUBSCRIBED_MS)
    await consume(notifier, golden("condition.breached"), SUBSCRIBED_MS + 1)

    assert heard(store, everything) == ["condition.breached", "grant.suspended"]
    assert heard(store, of_grantee) == ["condition.breached", "grant.suspended"]


async def test_a_grant_contact_hears_of_its_grant_whenever_the_log_received_it(
    store: NotificationStore,
) -> None:
    """The contact's subscription is made on reading ``grant.issued`` (now), after the
    records it hears of were appended."""
    notifier = Notifier(store, retry_attempts=1)
    long_ago = SUBSCRIBED_MS - 3_600_000

    await consume(notifier, golden("grant.issued"), long_ago)
    await consume(notifier, golden("grant.suspended"), long_ago + 1)
    await consume(notifier, golden("condition.breached"), long_ago + 2)

    contact = contact_subscription(store)
    assert heard(store, contact) == ["condition.breached", "grant.issued", "grant.suspended"]


async def test_without_a_record_time_every_subscription_hears(store: NotificationStore) -> None:
    everything = regulator(store)
    notifier = Notifier(store, retry_attempts=1)

    await consume(notifier, golden("grant.issued"), None)

    assert heard(store, everything) == ["grant.issued"]
    assert heard(store, contact_subscription(store)) == ["grant.issued"]
