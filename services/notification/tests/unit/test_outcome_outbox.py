"""Delivery outcomes are an outbox: ``notification.delivered``/``.failed`` is stored with
the outcome, in the same transaction, and published after (``announce_pending``). A publish
that fails leaves it unannounced; a later round, or a restart, publishes it with the same
event id, once."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from carveout_contracts import Envelope, NotificationDelivered, NotificationFailed, codec, topics
from carveout_notification import delivery
from carveout_notification.delivery import Deliverer
from carveout_notification.domain import NAMESPACE, Subscription, new_secret
from carveout_notification.settings import NotificationSettings
from carveout_notification.store import NotificationRecord, NotificationStore
from carveout_notification.webhooks import MAX_RESPONSE_BYTES
from carveout_runtime.stores import make_engine

from .queueing import queue_notification

NOW = datetime.now(UTC)


class Publisher:
    """The broker, as the deliverer sees it: it may fail the next ``failures`` publishes."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[Envelope] = []
        self.tried = 0

    async def __call__(self, event: Envelope) -> None:
        self.tried += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the broker is unreachable")
        self.sent.append(event)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NotificationStore]:
    made = NotificationStore(make_engine(f"sqlite:///{tmp_path}/notification.db"))
    yield made
    made.engine.dispose()


def settings(tmp_path: Path, max_attempts: int = 1) -> NotificationSettings:
    return NotificationSettings(
        database_url=f"sqlite:///{tmp_path}/notification.db",
        regulator_token="r",
        gateway_token="g",
        auditor_token="a",
        kafka_bootstrap="localhost:1",
        delivery_max_attempts=max_attempts,
        retry_base_seconds=60,
    )


def subscribe(store: NotificationStore, address: str = "https://hooks.example/ok") -> Subscription:
    subscription = Subscription(
        subscription_id="sub_" + uuid.uuid4().hex,
        channel="webhook",
        address=address,
        event_types=["*"],
        secret=new_secret(),
    )
    store.add_subscription(subscription, NOW)
    return subscription


def queue(store: NotificationStore, subscription: Subscription) -> NotificationRecord:
    queued = queue_notification(store, subscription, NOW)
    [due] = [n for n in store.due(NOW + timedelta(seconds=1)) if n.event_id == queued.event_id]
    return due


def public(host: str, port: int) -> list[str]:
    """Every receiver of these tests resolves to a public address."""
    return ["93.184.215.14"]


Receive = Callable[[httpx.Request], httpx.Response]


def deliverer(
    store: NotificationStore,
    tmp_path: Path,
    publish: Publisher,
    status: int = 200,
    receive: Receive | None = None,
    **kw: Any,
) -> Deliverer:
    """A deliverer whose receivers answer ``status``, or as ``receive`` does."""
    made = Deliverer(store, settings(tmp_path, **kw), publish, resolve=public)
    made._http = httpx.AsyncClient(
        transport=httpx.MockTransport(receive or (lambda request: httpx.Response(status)))
    )
    return made


def recording(posts: list[str]) -> Receive:
    """A receiver that accepts every webhook and records its ``webhook-id`` in ``posts``."""

    def receive(request: httpx.Request) -> httpx.Response:
        posts.append(request.headers["webhook-id"])
        return httpx.Response(200)

    return receive


async def attempts_ended(made: Deliverer) -> None:
    await asyncio.gather(*made._in_flight.values(), return_exceptions=True)


def row(store: NotificationStore, nid: str) -> NotificationRecord:
    [found] = [n for n in store.notifications(limit=1000)[0] if n.notification_id == nid]
    return found


async def test_a_delivery_stores_its_outcome_event_and_publishes_it(
    store: NotificationStore, tmp_path: Path
) -> None:
    subscription = subscribe(store)
    n = queue(store, subscription)
    publish = Publisher()

    await deliverer(store, tmp_path, publish).attempt(n, subscription)

    stored = row(store, n.notification_id)
    assert stored.status == "delivered"
    assert stored.outcome_event is not None
    outcome = codec.decode(topics.NOTIFICATIONS, stored.outcome_event.encode())
    assert isinstance(outcome, NotificationDelivered)
    assert outcome.event_id == uuid.uuid5(NAMESPACE, f"{n.notification_id}/delivered")
    assert (outcome.data.notification_id, outcome.data.attempts) == (n.notification_id, 1)
    assert [e.event_id for e in publish.sent] == [outcome.event_id]
    assert stored.announced_at is not None
    assert store.unannounced() == []


async def test_a_failed_publish_leaves_the_outcome_to_announce_later_with_its_event_id(
    store: NotificationStore, tmp_path: Path
) -> None:
    subscription = subscribe(store)
    n = queue(store, subscription)
    down = Publisher(failures=1)

    await deliverer(store, tmp_path, down).attempt(n, subscription)  # does not raise

    assert down.tried == 1 and down.sent == []
    stored = row(store, n.notification_id)
    assert stored.status == "delivered"  # the outcome is kept whatever the broker does
    assert stored.announced_at is None
    assert store.unannounced() == [(n.notification_id, stored.outcome_event)]
    assert stored.outcome_event is not None
    kept = codec.decode(topics.NOTIFICATIONS, stored.outcome_event.encode())

    # A restart: a new deliverer over the same store announces it, once.
    up = Publisher()
    again = deliverer(store, tmp_path, up)
    assert await again.announce_pending() == 1
    assert await again.announce_pending() == 0
    [sent] = up.sent
    assert sent.event_id == kept.event_id
    assert sent.model_dump() == kept.model_dump()
    assert store.unannounced() == []
    assert row(store, n.notification_id).announced_at is not None


async def test_a_final_failure_is_announced_as_notification_failed(
    store: NotificationStore, tmp_path: Path
) -> None:
    subscription = subscribe(store, "https://hooks.example/broken")
    n = queue(store, subscription)
    publish = Publisher()

    await deliverer(store, tmp_path, publish, status=500, max_attempts=1).attempt(n, subscription)

    stored = row(store, n.notification_id)
    assert stored.status == "failed"
    [sent] = publish.sent
    assert isinstance(sent, NotificationFailed)
    assert sent.event_id == uuid.uuid5(NAMESPACE, f"{n.notification_id}/failed")
    assert "500" in sent.data.error
    assert stored.outcome_event is not None
    assert codec.decode(topics.NOTIFICATIONS, stored.outcome_event.encode()) == sent


async def test_an_attempt_that_will_be_retried_announces_nothing(
    store: NotificationStore, tmp_path: Path
) -> None:
    subscription = subscribe(store, "https://hooks.example/broken")
    n = queue(store, subscription)
    publish = Publisher()

    await deliverer(store, tmp_path, publish, status=500, max_attempts=3).attempt(n, subscription)

    stored = row(store, n.notification_id)
    assert (stored.status, stored.attempts, stored.outcome_event) == ("pending", 1, None)
    assert store.unannounced() == []
    assert publish.tried == 0


def test_unannounced_lists_final_outcomes_oldest_first_until_marked(
    store: NotificationStore,
) -> None:
    subscription = subscribe(store)
    made = [queue(store, subscription) for _ in range(3)]
    until = NOW + timedelta(minutes=1)
    assert store.claim([n.notification_id for n in made], "r1", NOW, until) == {
        n.notification_id for n in made
    }
    for i, n in enumerate(reversed(made)):  # the last queued finishes first
        store.finish_attempt(
            n.notification_id,
            replica="r1",
            until=until,
            status="delivered",
            attempts=1,
            next_attempt_at=None,
            error=None,
            at=NOW + timedelta(seconds=i),
            outcome_event=f'{{"n": {i}}}',
        )
    pending = made[0]
    store.finish_attempt(
        pending.notification_id,
        replica="r1",
        until=until,
        status="pending",
        attempts=1,
        next_attempt_at=NOW,
        error="x",
        at=NOW,
        outcome_event='{"ignored": true}',
    )

    order = [nid for nid, _ in store.unannounced()]
    assert order == [n.notification_id for n in reversed(made)]
    assert store.unannounced(limit=2) == [
        (made[2].notification_id, '{"n": 0}'),
        (made[1].notification_id, '{"n": 1}'),
    ]
    store.mark_announced([made[2].notification_id], NOW)
    assert [nid for nid, _ in store.unannounced()] == [
        made[1].notification_id,
        made[0].notification_id,
    ]


async def test_the_delivery_worker_announces_what_is_left_when_it_starts(
    store: NotificationStore, tmp_path: Path
) -> None:
    subscription = subscribe(store)
    n = queue(store, subscription)
    await deliverer(store, tmp_path, Publisher(failures=1)).attempt(n, subscription)
    assert len(store.unannounced()) == 1

    publish = Publisher()
    worker = asyncio.create_task(Deliverer(store, settings(tmp_path), publish).run())
    try:
        async with asyncio.timeout(5):
            while True:
                if publish.sent:
                    break
                await asyncio.sleep(0.01)
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    assert [e.event_id for e in publish.sent] == [
        uuid.uuid5(NAMESPACE, f"{n.notification_id}/delivered")
    ]
    assert store.unannounced() == []


async def test_an_accepted_delivery_the_store_cannot_record_is_never_sent_again(
    store: NotificationStore, tmp_path: Path
) -> None:
    subscription = subscribe(store)
    first, second = queue(store, subscription), queue(store, subscription)
    posts: list[str] = []

    made = deliverer(store, tmp_path, Publisher(), receive=recording(posts))
    made.settings.store_retry_attempts = 1
    real_finish = store.finish_attempt
    store_down = True

    def finish(notification_id: str, **outcome: Any) -> bool:
        if store_down and notification_id == first.notification_id:
            raise OSError("the store is unavailable")
        return real_finish(notification_id, **outcome)

    store.finish_attempt = finish  # type: ignore[method-assign]

    await made._round()  # both attempted: the first accepted, its outcome not recorded
    await attempts_ended(made)
    for _ in range(3):  # rounds while the store refuses the first outcome
        await made._round()
        await attempts_ended(made)
        assert made.last_error is not None
    store_down = False
    await made._round()  # the outcome is recorded; nothing is sent again
    await attempts_ended(made)
    assert sorted(posts) == sorted([first.notification_id, second.notification_id])
    assert row(store, first.notification_id).status == "delivered"
    assert row(store, second.notification_id).status == "delivered"
    assert made.last_error is None


async def test_an_outcome_the_store_keeps_refusing_stops_no_other_delivery(
    store: NotificationStore, tmp_path: Path
) -> None:
    subscription = subscribe(store)
    refused, other = queue(store, subscription), queue(store, subscription)
    posts: list[str] = []

    made = deliverer(store, tmp_path, Publisher(), receive=recording(posts))
    real_finish = store.finish_attempt
    refusing = True

    def finish(notification_id: str, **outcome: Any) -> bool:
        if refusing and notification_id == refused.notification_id:
            raise ValueError("constraint failed: secret-ish detail")  # not "unavailable"
        return real_finish(notification_id, **outcome)

    store.finish_attempt = finish  # type: ignore[method-assign]

    await made._round()
    await attempts_ended(made)
    assert row(store, other.notification_id).status == "delivered"
    later = queue(store, subscription)  # queued while the refused outcome waits
    await made._round()  # the refused outcome fails again; the new one is started anyway
    await attempts_ended(made)
    assert row(store, later.notification_id).status == "delivered"
    assert made.last_error is not None and "secret-ish" not in made.last_error
    assert row(store, refused.notification_id).status == "pending"
    refusing = False
    await made._round()
    await attempts_ended(made)
    assert row(store, refused.notification_id).status == "delivered"
    assert made.last_error is None
    assert sorted(posts) == sorted(
        [refused.notification_id, other.notification_id, later.notification_id]
    )


class CloseFails(httpx.AsyncByteStream):
    """A 2xx answer longer than what is read, whose connection breaks when it is closed."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * MAX_RESPONSE_BYTES

    async def aclose(self) -> None:
        raise httpx.ReadError("connection reset by peer")


async def test_a_2xx_whose_response_fails_to_close_is_delivered_not_retried(
    store: NotificationStore, tmp_path: Path
) -> None:
    subscription = subscribe(store)
    n = queue(store, subscription)
    made = Deliverer(store, settings(tmp_path, max_attempts=3), Publisher(), resolve=public)
    made._http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, stream=CloseFails()))
    )
    await made.attempt(n, subscription)
    assert row(store, n.notification_id).status == "delivered"
    assert row(store, n.notification_id).attempts == 1


async def test_an_accepted_delivery_whose_outcome_event_cannot_be_made_is_not_sent_again(
    store: NotificationStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscription = subscribe(store)
    n = queue(store, subscription)
    posts: list[str] = []

    def broken(*args: Any) -> Envelope:
        raise ValueError("the outcome event is invalid")

    monkeypatch.setattr(delivery, "outcome_event", broken)
    made = deliverer(store, tmp_path, Publisher(), receive=recording(posts))

    for _ in range(3):
        await made._round()
        await attempts_ended(made)
    assert posts == [n.notification_id]
    assert row(store, n.notification_id).status == "delivered"
