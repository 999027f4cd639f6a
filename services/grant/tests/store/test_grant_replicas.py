"""Grant replicas sharing one store (SQLite and PostgreSQL): one relay lease holder at a
time, taken over when its lease ends; the outbox's order is its commit order; actions on
one grant through two replicas give each version once, in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from carveout_contracts import Grantee, codec, topics
from carveout_grant.domain import GrantRequest, apply, issue, reinstate, suspend
from carveout_grant.lease import holds
from carveout_grant.lease_store import RelayLeases
from carveout_grant.store import (
    GrantChange,
    GrantEventRecord,
    GrantLogLeaf,
    GrantStore,
    StaleGrant,
)
from carveout_runtime.stores import make_engine

NOW = datetime(2026, 7, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def request(grantee: str = "org-netsec") -> GrantRequest:
    return GrantRequest(
        carveout_id="co-mythos-2026",
        model_id="mythos-preview",
        grantee=Grantee(id=grantee, name=grantee),
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=30),
    )


def record_issue(store: GrantStore, grant_id: str) -> int:
    event = issue(request(), grant_id=grant_id, by="regulator", now=NOW)
    return store.record([apply(None, event)], event, traceparent=None)


def wait_until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {within}s"
        time.sleep(0.01)


def test_one_of_two_replicas_holds_the_lease_and_the_other_takes_over_when_it_ends(
    database_url: str,
) -> None:
    a, b = RelayLeases(make_engine(database_url)), RelayLeases(make_engine(database_url))
    assert holds(a.take("a", NOW, 3), "a", NOW)
    assert not holds(b.take("b", at(1), 3), "b", at(1))
    assert holds(a.take("a", at(2), 3), "a", at(2))  # renewed: until 5
    assert not holds(b.take("b", at(4.9), 3), "b", at(4.9))
    # a stops renewing (it died): its lease ends at 5 and b takes it then, and a with it.
    assert holds(b.take("b", at(5), 3), "b", at(5))
    assert not holds(a.take("a", at(5.5), 3), "a", at(5.5))
    assert b.current() is not None and b.current().holder == "b"  # type: ignore[union-attr]
    # A replica stopping releases its lease: the other takes it at once.
    assert b.release("b") and not a.release("a")
    assert holds(a.take("a", at(6), 3), "a", at(6))


def test_replicas_asking_at_the_same_instant_give_one_holder(database_url: str) -> None:
    replicas = [RelayLeases(make_engine(database_url)) for _ in range(4)]
    replicas[0].take("gone", NOW, 1)  # an ended lease: every replica may take it at 2
    start = threading.Barrier(len(replicas))

    def ask(n: int) -> bool:
        start.wait()
        return holds(replicas[n].take(f"r{n}", at(2), 3), f"r{n}", at(2))

    with ThreadPoolExecutor(len(replicas)) as pool:
        won = list(pool.map(ask, range(len(replicas))))
    assert won.count(True) == 1
    holder = replicas[0].current()
    assert holder is not None and holder.holder == f"r{won.index(True)}"


def test_a_relay_never_sees_a_later_event_before_an_earlier_one_commits(
    database_url: str,
) -> None:
    """Appenders on several stores at once, a relay reading the outbox meanwhile: every
    batch it reads continues after what it published, so the topic's order is seq order
    and no event is skipped."""
    writers = [GrantStore(make_engine(database_url)) for _ in range(3)]
    relay = GrantStore(make_engine(database_url))
    per_writer, published = 15, list[int]()
    done = threading.Event()

    def append(n: int) -> None:
        for i in range(per_writer):
            record_issue(writers[n], f"grt_{n}_{i}")

    def read_as_relay() -> None:
        while True:
            finished = done.is_set()
            rows = relay.unpublished()
            seqs = [row.seq or 0 for row in rows]
            assert seqs == sorted(seqs) and all(s > max(published, default=0) for s in seqs)
            published.extend(seqs)
            if rows:
                relay.mark_published(seqs, NOW)
            elif finished:
                return

    reader = threading.Thread(target=read_as_relay)
    reader.start()
    with ThreadPoolExecutor(len(writers)) as pool:
        list(pool.map(append, range(len(writers))))
    done.set()
    reader.join(30)
    assert len(published) == len(writers) * per_writer == len(set(published))
    # The grant history's leaves follow the same order: the log is the outbox's order.
    with Session(relay.engine) as session:
        by_seq = session.exec(select(GrantEventRecord.event_id).order_by(col(GrantEventRecord.seq)))
        by_leaf = session.exec(select(GrantLogLeaf.event_id).order_by(col(GrantLogLeaf.leaf_index)))
        assert list(by_seq) == list(by_leaf)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_append_waits_for_the_one_begun_before_it_to_commit(database_url: str) -> None:
    """A sequence numbers rows as inserted: without taking turns, a later number could
    commit first and be relayed before an earlier one (PostgreSQL)."""
    first, second = GrantStore(make_engine(database_url)), GrantStore(make_engine(database_url))
    engine = make_engine(database_url)
    event = issue(request(), grant_id="grt_first", by="regulator", now=NOW)
    with first._session() as session:
        seq_first = first._write_change(session, GrantChange([apply(None, event)], event, None))
        later = ThreadPoolExecutor(1).submit(record_issue, second, "grt_second")

        def second_waits() -> bool:
            with engine.connect() as connection:
                waiting = connection.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    )
                ).scalar_one()
            return bool(waiting)

        wait_until(second_waits, 10, "the second append waits for the first to commit")
        assert not later.done() and second.unpublished() == []
        with engine.connect() as connection:
            numbers = connection.execute(
                text("SELECT pg_get_serial_sequence('grant_events', 'seq')")
            ).scalar_one()
            last = connection.execute(text(f"SELECT last_value FROM {numbers}")).scalar_one()
        assert last == seq_first  # it waits before its row takes the next number
        session.commit()
    seq_second = later.result(10)
    assert seq_first < seq_second
    assert [row.grant_id for row in second.unpublished()] == ["grt_first", "grt_second"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_actions_on_one_grant_through_two_replicas_make_each_version_once_in_order(
    database_url: str,
) -> None:
    """Two replicas suspending and reinstating one grant at once: each action either
    makes the next version or is refused as stale; the outbox holds 1, 2, 3... in order."""
    replicas = [GrantStore(make_engine(database_url)) for _ in range(2)]
    record_issue(replicas[0], "grt_1")
    refused = [0, 0]

    def act(n: int) -> None:
        store = replicas[n]
        made = 0
        while made < 10:
            grant = store.get("grt_1")
            assert grant is not None
            command = suspend if grant.lifecycle == "active" else reinstate
            event = command(grant, f"by replica {n}", by="regulator", now=NOW)
            try:
                store.record([apply(grant, event)], event, None, {"grt_1": grant.version})
            except StaleGrant:
                refused[n] += 1
                continue
            made += 1

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(act, range(2)))
    events = [
        codec.decode(topics.GRANTS, row.payload.encode()) for row in replicas[0].unpublished()
    ]
    versions = [getattr(e.data, "version", 1) for e in events]
    assert versions == list(range(1, 22))
    grant = replicas[1].get("grt_1")
    assert grant is not None and grant.version == 21


async def test_a_relay_hears_at_once_of_an_event_another_replica_recorded(
    database_url: str,
) -> None:
    """On PostgreSQL each replica's relay listens for the outbox's appends, so the one that
    relays need not wait for its next poll; on SQLite (one replica) there is nothing to
    listen to and the listener ends at once."""
    import asyncio

    from carveout_grant import outbox_signal

    relaying, recording = (GrantStore(make_engine(database_url)) for _ in range(2))
    heard = asyncio.Event()
    listener = asyncio.create_task(outbox_signal.listen(relaying.engine, heard.set))
    try:
        if relaying.engine.dialect.name != "postgresql":
            await asyncio.wait_for(listener, 5)
            return
        await asyncio.wait_for(heard.wait(), 10)  # told once listening: anything recorded before
        heard.clear()
        await asyncio.to_thread(record_issue, recording, "grt_listened")
        await asyncio.wait_for(heard.wait(), 10)
        heard.clear()
        published = datetime.now(UTC)
        event = issue(request(), grant_id="grt_replayed", by="regulator", now=NOW)
        change = GrantChange([apply(None, event)], event, None)
        payload = event.model_dump_json()
        await asyncio.to_thread(recording.record_from_log, change, payload, published)
        with pytest.raises(TimeoutError):  # published already: nothing to relay
            await asyncio.wait_for(heard.wait(), 0.5)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
