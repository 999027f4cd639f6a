"""Two delivery workers on one store are two replicas: each notification is attempted by the
one holding its claim, renewed while the attempt runs, taken over when its holder stops
renewing; the outcome is recorded and published once. Time is an injected clock: leases
run out because the test moves it, never because it waits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from carveout_contracts import Envelope
from carveout_notification.delivery import Deliverer
from carveout_notification.domain import Subscription, new_secret
from carveout_notification.settings import NotificationSettings
from carveout_notification.store import NotificationRecord, NotificationStore
from carveout_runtime.stores import make_engine

from .queueing import queue_notification

T0 = datetime(2026, 7, 1, tzinfo=UTC)
LEASE = 9.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Receiver:
    """Records each request's ``webhook-id``; holds every request while ``gate`` is shut."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        self.gate = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.posts.append(request.headers["webhook-id"])
        await self.gate.wait()
        return httpx.Response(200)


class Published(list[Envelope]):
    async def __call__(self, event: Envelope) -> None:
        self.append(event)


async def until(check: Callable[[], Any], what: str, within: float = 5.0) -> Any:
    """Wait for ``check`` to hold (a condition with a deadline, not a sleep)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if result := check():
            return result
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not within {within}s")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NotificationStore]:
    made = NotificationStore(make_engine(f"sqlite:///{tmp_path}/notification.db"))
    yield made
    made.engine.dispose()


def replica(
    store: NotificationStore, name: str, clock: Clock, receiver: Receiver
) -> tuple[Deliverer, Published]:
    settings = NotificationSettings(
        regulator_token="r",
        gateway_token="g",
        auditor_token="a",
        kafka_bootstrap="localhost:1",
        replica_id=name,
        lease_seconds=LEASE,
    )
    published = Published()
    made = Deliverer(
        store, settings, published, resolve=lambda host, port: ["93.184.215.14"], clock=clock
    )
    made._http = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    return made, published


def queue(store: NotificationStore) -> str:
    subscription = Subscription(
        subscription_id="sub_" + uuid.uuid4().hex,
        channel="webhook",
        address="https://hooks.example/carveout",
        event_types=["*"],
        secret=new_secret(),
    )
    store.add_subscription(subscription, T0)
    return queue_notification(store, subscription, T0).notification_id


def stored(store: NotificationStore, nid: str) -> NotificationRecord:
    with Session(store.engine) as session:
        found = session.get(NotificationRecord, nid)
        assert found is not None
        return found


async def test_of_two_replicas_one_attempts_and_publishes_each_notification(
    store: NotificationStore,
) -> None:
    clock, receiver = Clock(), Receiver()
    (a, by_a), (b, by_b) = (replica(store, name, clock, receiver) for name in "ab")
    nid = queue(store)

    await a._round()
    await until(lambda: receiver.posts, "a's attempt reaching the receiver")
    await b._round()  # a holds it: b starts nothing
    assert b.in_flight() == set() and receiver.posts == [nid]
    assert stored(store, nid).claimed_by == "a"

    receiver.gate.set()
    await until(lambda: not a.in_flight(), "a's attempt ending")
    for worker in (a, b, a, b):
        await worker._round()
    assert receiver.posts == [nid]
    assert [e.data.notification_id for e in by_a] == [nid] and by_b == []
    assert (stored(store, nid).status, stored(store, nid).claimed_by) == ("delivered", None)


async def test_a_long_attempt_renews_its_lease_and_is_not_taken_over(
    store: NotificationStore,
) -> None:
    clock, receiver = Clock(), Receiver()
    (a, _), (b, _) = (replica(store, name, clock, receiver) for name in "ab")
    nid = queue(store)
    await a._round()
    await until(lambda: receiver.posts, "a's attempt reaching the receiver")
    first = stored(store, nid).lease_until

    clock.advance(LEASE / 3)  # a third of the lease: a's next round renews it
    await a._round()
    renewed = stored(store, nid).lease_until
    assert renewed is not None and first is not None and renewed > first
    clock.advance(LEASE * 2 / 3 + 1)  # past the first lease, within the renewed one
    await b._round()
    assert b.in_flight() == set() and receiver.posts == [nid]
    await a.stop_attempts()


async def test_a_dead_replica_is_taken_over_and_its_late_outcome_is_not_recorded(
    store: NotificationStore,
) -> None:
    clock, receiver = Clock(), Receiver()
    (a, by_a), (b, by_b) = (replica(store, name, clock, receiver) for name in "ab")
    nid = queue(store)
    await a._round()
    await until(lambda: receiver.posts, "a's attempt reaching the receiver")

    clock.advance(LEASE + 1)  # a renews nothing any more: as good as dead
    await b._round()
    await until(lambda: len(receiver.posts) == 2, "b's attempt reaching the receiver")
    assert stored(store, nid).claimed_by == "b"
    receiver.gate.set()  # both accepted by the receiver (it dedupes by webhook-id)
    await until(lambda: not a.in_flight() and not b.in_flight(), "both attempts ending")

    row = stored(store, nid)
    assert (row.status, row.attempts, row.claimed_by) == ("delivered", 1, None)
    assert by_a == []  # a's late outcome was refused: nothing of it recorded or published
    assert [e.data.notification_id for e in by_b] == [nid]
    assert store.unannounced() == []


async def test_a_replica_that_lost_its_claim_abandons_the_attempt(
    store: NotificationStore,
) -> None:
    clock, receiver = Clock(), Receiver()
    (a, by_a), (b, _) = (replica(store, name, clock, receiver) for name in "ab")
    nid = queue(store)
    await a._round()
    await until(lambda: receiver.posts, "a's attempt reaching the receiver")
    [attempt] = a._in_flight.values()

    clock.advance(LEASE + 1)  # a stalled past its lease
    await b._round()
    await a._round()  # a wakes, tries to renew, learns b holds it
    await until(lambda: attempt.done(), "a's attempt abandoned")
    assert attempt.cancelled() and a.in_flight() == set() and nid not in a.claims
    assert stored(store, nid).claimed_by == "b"
    receiver.gate.set()
    await until(lambda: stored(store, nid).status == "delivered", "b's delivery")
    assert by_a == []


async def test_stopping_gives_up_the_claims_so_another_replica_starts_at_once(
    store: NotificationStore,
) -> None:
    clock, receiver = Clock(), Receiver()
    (a, _), (b, _) = (replica(store, name, clock, receiver) for name in "ab")
    nid = queue(store)
    worker = asyncio.create_task(a.run())
    await until(lambda: receiver.posts, "a's attempt reaching the receiver")
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    assert stored(store, nid).claimed_by is None  # released, not left to run out

    receiver.gate.set()
    await b._round()  # no clock moved: b need not wait for a's lease
    await until(lambda: stored(store, nid).status == "delivered", "b's delivery")
    assert receiver.posts == [nid, nid]


async def test_claims_won_by_a_round_that_then_fails_are_given_up_not_kept(
    store: NotificationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails after a round claimed (the connection killed): the claims are given
    up, not renewed round after round with nothing attempting them."""
    clock, receiver = Clock(), Receiver()
    (a, _), (b, _) = (replica(store, name, clock, receiver) for name in "ab")
    nid = queue(store)

    def connection_lost(ids: Any) -> Any:
        raise ConnectionError("the store's connection was killed")

    monkeypatch.setattr(store, "rows", connection_lost)
    with pytest.raises(ConnectionError):
        await a._round()
    monkeypatch.undo()

    assert nid not in a.claims.leases
    assert stored(store, nid).claimed_by is None
    await b._round()  # free for anyone at once, not when a's lease would run out
    await until(lambda: receiver.posts == [nid], "b's attempt reaching the receiver")
    receiver.gate.set()
    await until(lambda: not b.in_flight(), "b's attempt ending")
