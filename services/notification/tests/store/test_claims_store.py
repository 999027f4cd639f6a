"""Claims in the store, on SQLite and PostgreSQL: two store objects on one database are two
replicas. One claims, the other waits for the lease to run out; an outcome is recorded
once, by the holder, even when the replica taken over finishes late; each outcome event is
published by one replica."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from carveout_contracts import topics
from carveout_notification.claims import claimable
from carveout_notification.domain import notification_id
from carveout_notification.fanout import EventEffects, Notification
from carveout_notification.store import NotificationRecord, NotificationStore
from carveout_runtime.stores import make_engine

T0 = datetime(2026, 7, 1, tzinfo=UTC)
S = timedelta(seconds=1)
LEASE = 10 * S


@pytest.fixture
def replicas(database_url: str) -> Iterator[tuple[NotificationStore, NotificationStore]]:
    """Two replicas' stores on one database."""
    a, b = (NotificationStore(make_engine(database_url)) for _ in range(2))
    yield a, b
    a.engine.dispose()
    b.engine.dispose()


def queue(store: NotificationStore, count: int = 1) -> list[str]:
    """``count`` notifications due at T0, each of an event of its own; their ids."""
    made = []
    for _ in range(count):
        event_id = str(uuid.uuid4())
        made.append(
            Notification(
                notification_id=notification_id(event_id, "sub_1"),
                subscription_id="sub_1",
                event_id=event_id,
                event_type="condition.breached",
                channel="webhook",
                address="https://hooks.example/h",
                payload=json.dumps({"type": "condition.breached"}),
                due_at=T0,
            )
        )
    store.record_event(
        EventEffects(contacts=[], new_subscriptions=[], notifications=made),
        event_id=str(uuid.uuid4()),
        topic=topics.BREACHES,
        at=T0,
    )
    return [n.notification_id for n in made]


def delivered(store: NotificationStore, nid: str, replica: str, at: datetime) -> bool:
    return store.finish_attempt(
        nid,
        replica=replica,
        status="delivered",
        attempts=1,
        next_attempt_at=None,
        error=None,
        at=at,
        until=at + LEASE,
        outcome_event=json.dumps({"by": replica}),
    )


def row(store: NotificationStore, nid: str) -> NotificationRecord:
    with Session(store.engine) as session:
        found = session.get(NotificationRecord, nid)
        assert found is not None
        return found


def test_of_two_replicas_one_claims_and_the_other_waits_for_its_lease(
    replicas: tuple[NotificationStore, NotificationStore],
) -> None:
    a, b = replicas
    [nid] = queue(a)
    assert a.claim([nid], "a", T0, T0 + LEASE) == {nid}
    assert b.claim([nid], "b", T0 + S, T0 + S + LEASE) == set()
    assert b.due(T0 + S) == []  # nor is it due for b
    assert b.next_due_at() == T0 + LEASE  # when a's lease runs out
    assert b.claim([nid], "b", T0 + LEASE, T0 + 2 * LEASE) == set()  # its last instant
    assert a.renew([nid], "a", T0 + 2 * LEASE) == {nid}  # a at work renews it
    assert b.claim([nid], "b", T0 + LEASE + S, T0 + 3 * LEASE) == set()


def test_an_expired_lease_is_taken_over_and_the_late_outcome_is_recorded_once(
    replicas: tuple[NotificationStore, NotificationStore],
) -> None:
    a, b = replicas
    [nid] = queue(a)
    assert a.claim([nid], "a", T0, T0 + LEASE) == {nid}
    later = T0 + LEASE + S  # a stalled past its lease
    assert [n.notification_id for n in b.due(later)] == [nid]
    assert b.claim([nid], "b", later, later + LEASE) == {nid}

    assert a.renew([nid], "a", later + LEASE) == set()  # a learns it lost the claim
    assert delivered(b, nid, "b", later + S)
    assert not delivered(a, nid, "a", later + 2 * S)  # a wakes and finishes late
    stored = row(a, nid)
    assert (stored.status, stored.outcome_event, stored.claimed_by) == (
        "delivered",
        json.dumps({"by": "b"}),
        "b",  # held until its outcome is published
    )
    assert a.claim_unannounced("a", later + 3 * S, later + LEASE) == []
    assert b.claim_unannounced("b", later + 3 * S, later + LEASE) == [(nid, stored.outcome_event)]
    b.mark_announced([nid], later + 3 * S)
    assert (row(a, nid).claimed_by, row(a, nid).lease_until) == (None, None)
    assert b.unannounced() == []


def test_a_late_outcome_nobody_took_over_is_still_recorded(
    replicas: tuple[NotificationStore, NotificationStore],
) -> None:
    a, _ = replicas
    [nid] = queue(a)
    assert a.claim([nid], "a", T0, T0 + LEASE) == {nid}
    assert delivered(a, nid, "a", T0 + 2 * LEASE)  # nobody else is attempting it
    assert not delivered(a, nid, "a", T0 + 2 * LEASE)  # and only once


def test_a_retry_gives_the_claim_up_to_whoever_is_free_when_it_is_due(
    replicas: tuple[NotificationStore, NotificationStore],
) -> None:
    a, b = replicas
    [nid] = queue(a)
    assert a.claim([nid], "a", T0, T0 + LEASE) == {nid}
    assert a.finish_attempt(
        nid,
        replica="a",
        status="pending",
        attempts=1,
        next_attempt_at=T0 + 5 * S,
        error="503",
        at=T0,
        until=T0 + LEASE,
    )
    assert (row(a, nid).claimed_by, row(a, nid).lease_until) == (None, None)
    assert b.due(T0 + S) == []
    assert b.next_due_at() == T0 + 5 * S
    assert b.claim([nid], "b", T0 + 5 * S, T0 + 5 * S + LEASE) == {nid}


def test_an_outcome_whose_recorder_died_is_published_by_another_replica_once(
    replicas: tuple[NotificationStore, NotificationStore],
) -> None:
    a, b = replicas
    [nid] = queue(a)
    a.claim([nid], "a", T0, T0 + LEASE)
    assert delivered(a, nid, "a", T0)  # then a dies before publishing it
    assert b.claim_unannounced("b", T0 + S, T0 + S + LEASE) == []  # a's lease runs
    late = T0 + LEASE + S
    [(taken, _)] = b.claim_unannounced("b", late, late + LEASE)
    assert taken == nid
    assert a.claim_unannounced("a", late + S, late + LEASE) == []  # one publisher


def test_a_replica_restarted_under_its_id_releases_what_its_previous_process_held(
    replicas: tuple[NotificationStore, NotificationStore],
) -> None:
    a, b = replicas
    ids = queue(a, 3)
    assert a.claim(ids, "a", T0, T0 + LEASE) == set(ids)
    assert b.release("a", ids[:1]) == 1  # one of them, given up when stopping
    assert b.claim(ids, "b", T0 + S, T0 + LEASE) == {ids[0]}
    assert a.release("a") == 2  # the rest, at start-up
    assert b.claim(ids, "b", T0 + S, T0 + LEASE) == set(ids[1:])


def test_replicas_claiming_the_same_notifications_at_once_split_them(
    replicas: tuple[NotificationStore, NotificationStore],
) -> None:
    a, b = replicas
    ids = queue(a, 60)
    won: dict[str, set[str]] = {"a": set(), "b": set()}
    start = threading.Barrier(2)

    def claim(store: NotificationStore, replica: str) -> None:
        start.wait()
        for i in range(0, len(ids), 5):  # overlapping batches, as rounds would ask
            won[replica] |= store.claim(ids[i : i + 10], replica, T0, T0 + LEASE)

    threads = [threading.Thread(target=claim, args=pair) for pair in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert won["a"] | won["b"] == set(ids)
    assert won["a"] & won["b"] == set()
    winners = {nid: replica for replica, taken in won.items() for nid in taken}
    assert {nid: row(a, nid).claimed_by for nid in ids} == winners


CLAIMS = [(None, None), ("a", T0 + S), ("a", T0), ("a", T0 - S)]
"""Claims as stored (holder, lease end), asked for by another replica at T0."""


def test_the_store_claims_by_the_same_rule_as_claimable(
    replicas: tuple[NotificationStore, NotificationStore],
) -> None:
    a, b = replicas
    ids = queue(a, len(CLAIMS))
    for nid, (claimed_by, lease_until) in zip(ids, CLAIMS, strict=True):
        if claimed_by is not None and lease_until is not None:
            assert a.claim([nid], claimed_by, lease_until - LEASE, lease_until) == {nid}
        expected = claimable(claimed_by, lease_until, T0)
        assert (b.claim([nid], "b", T0, T0 + LEASE) == {nid}) is expected, (claimed_by, lease_until)


def test_one_row_per_event_and_subscription_whatever_its_id(
    replicas: tuple[NotificationStore, NotificationStore],
) -> None:
    a, _ = replicas
    [nid] = queue(a)
    twin = NotificationRecord.model_validate(
        row(a, nid).model_dump(), update={"notification_id": "ntf_other"}
    )
    with Session(a.engine) as session:
        session.add(twin)
        with pytest.raises(IntegrityError):
            session.commit()
