"""Two outbox relays on one store, as two grant replicas run them: the lease holder alone
publishes, in order; the other answers waits from the store's marks, and relays once the
holder's lease ends. Time is a clock the test moves."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carveout_contracts import Grantee
from carveout_grant.domain import GrantRequest, apply, issue
from carveout_grant.lease_store import RelayLeases
from carveout_grant.relay import Leadership, OutboxRelay
from carveout_grant.store import GrantStore
from carveout_runtime.stores import make_engine

NOW = datetime(2026, 7, 1, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Topic:
    """Where the relays publish: every record, by which relay."""

    records: list[tuple[str, bytes]] = field(default_factory=list)

    def publisher(self, name: str) -> Any:
        async def publish(value: bytes, _topic: str, _key: bytes, _trace: str | None) -> None:
            self.records.append((name, value))

        return publish


def replica(store_url: str, name: str, topic: Topic, clock: Clock) -> OutboxRelay:
    store = GrantStore(make_engine(store_url))
    leadership = Leadership(RelayLeases(store.engine), name, lease_seconds=3, renew_seconds=1)
    return OutboxRelay(store, topic.publisher(name), 0.05, clock, leadership, 0.01)


def record(relay: OutboxRelay, grant_id: str) -> int:
    request = GrantRequest(
        carveout_id="co-mythos-2026",
        model_id="mythos-preview",
        grantee=Grantee(id="org-netsec", name="org-netsec"),
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=30),
    )
    event = issue(request, grant_id=grant_id, by="regulator", now=NOW)
    return relay.store.record([apply(None, event)], event, None)


async def test_one_relay_publishes_and_the_other_sees_it_published(tmp_path: Path) -> None:
    url, topic, clock = f"sqlite:///{tmp_path}/grant.db", Topic(), Clock()
    a, b = replica(url, "a", topic, clock), replica(url, "b", topic, clock)
    assert await a.relay_once() == 0 and a.leading()  # a asked first: it relays
    seqs = [record(b, f"grt_{n}") for n in range(3)]  # recorded through the other replica
    assert await b.relay_once() == 0 and not b.leading()
    waiting = asyncio.create_task(b.wait_published(seqs[-1], 5))
    assert await a.relay_once() == 3
    assert await waiting  # b read the marks a left in the store
    assert [name for name, _ in topic.records] == ["a", "a", "a"]
    assert await b.wait_published(seqs[0], 0)


async def test_when_the_relay_dies_the_other_takes_over_after_its_lease(tmp_path: Path) -> None:
    url, topic, clock = f"sqlite:///{tmp_path}/grant.db", Topic(), Clock()
    a, b = replica(url, "a", topic, clock), replica(url, "b", topic, clock)
    record(a, "grt_0")
    assert await a.relay_once() == 1 and not b.leading()
    clock.advance(1)
    assert await a.relay_once() == 0  # renewed: its lease now ends at 4 s
    # a dies here. Nothing is relayed until its lease ends; then b relays, in order.
    seqs = [record(b, f"grt_{n}") for n in range(1, 4)]
    clock.advance(2.9)
    assert await b.relay_once() == 0
    assert not await b.wait_published(seqs[0], 0)
    clock.advance(0.1)
    assert await b.relay_once() == 3
    assert [name for name, _ in topic.records] == ["a", "b", "b", "b"]
    assert [row.seq for row in b.store.unpublished()] == []


async def test_a_stopped_relay_hands_the_lease_over_at_the_next_ask(tmp_path: Path) -> None:
    url, topic, clock = f"sqlite:///{tmp_path}/grant.db", Topic(), Clock()
    a, b = replica(url, "a", topic, clock), replica(url, "b", topic, clock)
    relayed = asyncio.Event()

    async def publish(value: bytes, _topic: str, _key: bytes, _trace: str | None) -> None:
        relayed.set()

    a.publish = publish
    record(a, "grt_0")
    running = asyncio.create_task(a.run())
    await asyncio.wait_for(relayed.wait(), 5)  # a's relay loop runs, holding the lease
    assert not b.leading()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    clock.advance(1)  # b's next ask, two seconds before a's lease would have ended
    assert b.leading()
