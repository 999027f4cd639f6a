"""Rebuilding the notification store from a real broker's log (``carveout_notification.replay``).

The live store folds grant and breach events with the live handler (the ``EventHandler``
over ``Notifier``), regulators subscribe before and in the middle of the traffic, and the
delivery worker delivers some notifications, fails one for good and leaves the grant
contact's pending, publishing the outcomes on ``carveout.notifications`` (two after failed
publishes). ``replay`` then rebuilds the store, carrying the subscriptions
over from the live store: the digests must match, and nothing is published or sent.

The broker is shared with other tests: the live store starts as a replay of what is on
the log already, and the counts are compared with that replay.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from carveout_contracts import Envelope, codec, topics
from carveout_notification import replay as notification_replay
from carveout_notification.delivery import Deliverer
from carveout_notification.domain import Subscription, new_secret, rotate
from carveout_notification.handlers.grants import Notifier
from carveout_notification.settings import NotificationSettings
from carveout_notification.store import NotificationStore
from carveout_ops.broker import ensure_topics
from carveout_runtime.consumers import EventHandler
from carveout_runtime.logread import by_append_time, log_ends, read_all
from carveout_runtime.replay import NotAFreshStore
from carveout_runtime.stores import make_engine

pytestmark = pytest.mark.broker

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
FOLDED = [topics.GRANTS, topics.BREACHES]


def event(event_type: str, grant_id: str | None, grantee: str) -> bytes:
    """A golden event about ``grant_id`` (a breach of no grant when ``None``)."""
    raw: dict[str, Any] = json.loads((GOLDEN / f"{event_type}.v1.json").read_bytes())
    raw["event_id"] = str(uuid.uuid4())
    raw["key"] = grant_id or grantee
    raw["data"]["grant_id"] = grant_id
    if event_type == "grant.issued":
        raw["data"]["grantee"]["id"] = grantee
    if event_type == "condition.breached":
        raw["data"].update(
            grantee_id=grantee,
            breach_id=f"brc_{uuid.uuid4().hex[:16]}",
            grant_version=raw["data"]["grant_version"] if grant_id else None,
        )
    return json.dumps(raw).encode()


async def append(bootstrap: str, records: Sequence[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for topic, value in records:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


def regulator(store: NotificationStore, address: str, event_types: list[str]) -> Subscription:
    subscription = Subscription(
        subscription_id="sub_" + uuid.uuid4().hex,
        channel="webhook",
        address=address,
        event_types=event_types,
        secret=new_secret(),
    )
    store.add_subscription(subscription, datetime.now(UTC))
    return subscription


class Outcomes:
    """Publishes outcome events to the real broker, failing the first ``failures``."""

    def __init__(self, producer: AIOKafkaProducer, failures: int = 0) -> None:
        self.producer = producer
        self.failures = failures

    async def __call__(self, outcome: Envelope) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the broker is unreachable")
        await self.producer.send_and_wait(
            topics.NOTIFICATIONS, codec.encode_value(outcome), key=outcome.key.encode()
        )


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(500 if "broken" in str(request.url) else 204)


async def deliver(
    bootstrap: str, store: NotificationStore, tmp_path: Path, to: set[str], failures: int = 0
) -> None:
    """One delivery round for the notifications of subscriptions ``to``; outcomes published."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        deliverer = Deliverer(
            store,
            settings(tmp_path, bootstrap),
            Outcomes(producer, failures),
            resolve=lambda host, port: ["93.184.215.14"],  # regulator.example: public
        )
        deliverer._http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        subscriptions = {s.subscription_id: s for s in store.subscriptions()}
        for n in store.due(datetime.now(UTC), limit=10_000):
            if n.subscription_id in to:
                await deliverer.attempt(n, subscriptions[n.subscription_id])
        if not failures:
            assert await deliverer.announce_pending() == 0
        await deliverer._http.aclose()
    finally:
        await producer.stop()


async def announce(bootstrap: str, store: NotificationStore, tmp_path: Path) -> int:
    """A delivery worker's announcement round (as after a restart)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        return await Deliverer(
            store, settings(tmp_path, bootstrap), Outcomes(producer)
        ).announce_pending()
    finally:
        await producer.stop()


def settings(tmp_path: Path, bootstrap: str) -> NotificationSettings:
    return NotificationSettings(
        database_url=f"sqlite:///{tmp_path}/unused.db",
        regulator_token="r",
        gateway_token="g",
        auditor_token="a",
        kafka_bootstrap=bootstrap,
        delivery_max_attempts=1,
    )


async def fold_live(
    bootstrap: str, store: NotificationStore, after: dict[Any, int], dead: list[str]
) -> None:
    """The live handlers over the records appended since ``after`` (by append time)."""
    notifier = Notifier(store, retry_attempts=1)

    async def dead_letter(
        _value: bytes, reason: str, _error: str, _message: Any, _health: Any = None
    ) -> None:
        dead.append(reason)

    handlers = {
        topic: EventHandler(
            topic,
            is_processed=store.is_processed,
            process=notifier,
            dead_letter=dead_letter,
            retry_attempts=1,
        )
        for topic in FOLDED
    }
    records = await read_all(bootstrap, FOLDED)
    for record in by_append_time(records):
        if record.offset >= after.get(_tp(record), 0):
            await handlers[record.topic].handle(record.value, record)


def _tp(record: Any) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


def statuses(store: NotificationStore, subscription_id: str) -> list[tuple[str, str]]:
    items, _ = store.notifications(subscription_id=subscription_id, limit=1000)
    return sorted((n.event_type, n.status) for n in items)


async def test_replay_rebuilds_the_live_notification_store_sending_nothing(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = kafka_bootstrap
    await ensure_topics(bootstrap)
    live_url = f"sqlite:///{tmp_path}/live.db"
    ends_before = await log_ends(bootstrap, topics.ALL_TOPICS)
    before = await notification_replay.replay(bootstrap=bootstrap, database_url=live_url)
    store = NotificationStore(make_engine(live_url))

    suffix = uuid.uuid4().hex[:8]
    grant_id, grantee = f"grt_notify_{suffix}", f"org-notify-{suffix}"
    early = regulator(store, "https://regulator.example/all", ["*"])
    broken = regulator(store, "https://regulator.example/broken", ["condition.breached"])
    repeated = event("condition.breached", grant_id, grantee)
    first = [
        (topics.GRANTS, event("grant.issued", grant_id, grantee)),
        (topics.BREACHES, repeated),
        (topics.GRANTS, event("grant.suspended", grant_id, grantee)),
        (topics.BREACHES, event("condition.breached", None, grantee)),
        (topics.BREACHES, repeated),
        (topics.BREACHES, b"{not json"),
    ]
    await append(bootstrap, first)
    late = regulator(store, "https://regulator.example/late", ["*"])
    second = [
        (topics.GRANTS, event("grant.reinstated", grant_id, grantee)),
        (topics.BREACHES, event("condition.breached", grant_id, grantee)),
    ]
    await append(bootstrap, second)

    # Each regulator subscription was made between the records it must tell apart.
    created = {s.subscription_id: at.timestamp() * 1000 for s, at in store.subscriptions_created()}
    stamps = {r.value: r.timestamp for r in await read_all(bootstrap, FOLDED)}
    assert min(stamps[v] for _, v in first) >= created[early.subscription_id]
    assert max(stamps[v] for _, v in first) < created[late.subscription_id]
    assert min(stamps[v] for _, v in second) >= created[late.subscription_id]

    dead: list[str] = []
    await fold_live(bootstrap, store, ends_before, dead)
    assert dead == ["bad_json"]
    await deliver(bootstrap, store, tmp_path, {early.subscription_id, broken.subscription_id})
    # The broker is down while the late regulator's two are delivered: stored, unannounced.
    await deliver(bootstrap, store, tmp_path, {late.subscription_id}, failures=2)
    assert len(store.unannounced()) == 2
    assert await announce(bootstrap, store, tmp_path) == 2  # later, with the same event ids
    assert store.unannounced() == []

    [contact] = [s for s in store.subscriptions() if s.grant_id == grant_id]
    assert statuses(store, early.subscription_id) == [
        ("condition.breached", "delivered"),
        ("condition.breached", "delivered"),
        ("condition.breached", "delivered"),
        ("grant.issued", "delivered"),
        ("grant.reinstated", "delivered"),
        ("grant.suspended", "delivered"),
    ]
    assert statuses(store, broken.subscription_id) == [("condition.breached", "failed")] * 3
    assert statuses(store, late.subscription_id) == [
        ("condition.breached", "delivered"),
        ("grant.reinstated", "delivered"),
    ]
    assert statuses(store, contact.subscription_id) == [
        ("condition.breached", "pending"),
        ("condition.breached", "pending"),
        ("grant.issued", "pending"),
        ("grant.reinstated", "pending"),
        ("grant.suspended", "pending"),
    ]
    # A rotated secret is configuration: carried over with the one it replaced and its expiry.
    rotated = rotate(early, new_secret(), datetime.now(UTC))
    store.replace_subscription(rotated)
    live_digest = notification_replay.digest(live_url)
    store.engine.dispose()

    # The replay: nothing published, nothing sent.
    sent: list[Any] = []

    async def no_http(*args: Any, **kwargs: Any) -> Any:
        sent.append(args)
        raise AssertionError("a replay sent a webhook")

    monkeypatch.setattr(httpx.AsyncClient, "send", no_http)
    monkeypatch.setattr("aiosmtplib.send", lambda *a, **k: sent.append(a))
    ends = await log_ends(bootstrap, topics.ALL_TOPICS)
    rebuilt_url = f"sqlite:///{tmp_path}/rebuilt.db"

    report = await notification_replay.replay(
        bootstrap=bootstrap, database_url=rebuilt_url, source_database_url=live_url
    )

    assert await log_ends(bootstrap, topics.ALL_TOPICS) == ends
    assert sent == []
    assert report.digest == live_digest
    rebuilt = NotificationStore(make_engine(rebuilt_url))
    assert rebuilt.get_subscription(early.subscription_id) == rotated
    rebuilt.engine.dispose()

    def grown(key: str) -> int:
        return report.records.get(key, 0) - before.records.get(key, 0)

    assert grown(topics.GRANTS) == 3
    assert grown(topics.BREACHES) == 5
    assert grown(topics.NOTIFICATIONS) == 6 + 3 + 2  # every final outcome, once
    assert report.poison - before.poison == 1
    assert report.skipped - before.skipped == 1  # the repeated breach

    with pytest.raises(NotAFreshStore):
        await notification_replay.replay(
            bootstrap=bootstrap, database_url=rebuilt_url, source_database_url=live_url
        )

    # Without the live store's subscriptions, the regulators' are missing, and the
    # contact's is made anew (another secret, another time): another store.
    alone = await notification_replay.replay(
        bootstrap=bootstrap, database_url=f"sqlite:///{tmp_path}/alone.db"
    )
    tables, live_tables = alone.digest["tables"], live_digest["tables"]
    assert tables["subscriptions"]["rows"] == live_tables["subscriptions"]["rows"] - 3
    assert tables["notifications"]["rows"] == live_tables["notifications"]["rows"] - 11
    assert tables["grant_contacts"] == live_tables["grant_contacts"]
    assert sent == []
