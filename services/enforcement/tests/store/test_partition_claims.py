"""Access partition claims on one store shared by two replicas (SQLite and PostgreSQL):
the newer claim wins, the older owner's batch is refused, and usage is taken from the
store on a claim."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from carveout_enforcement.ownership import PartitionClaims, PartitionTakenOver
from carveout_enforcement.store import EnforcementStore
from carveout_runtime.stores import make_engine

KEY = ("grant-1", "day", 1_782_864_000)


def claims_of(store: EnforcementStore, owner: str) -> PartitionClaims:
    return PartitionClaims(
        store.engine,
        owner,
        {},
        lambda: store.load_usage(0),
        clock=lambda: datetime(2026, 7, 1, tzinfo=UTC),
    )


def claim(claims: PartitionClaims, partitions: list[int]) -> None:
    claims.adopt(*claims.claim(partitions))


def record(store: EnforcementStore, claims: PartitionClaims, units: int) -> None:
    store.record_judgements([], [], {KEY: units}, None, claims.fence([0]))


def test_the_newer_claim_wins_and_the_older_owner_records_nothing(database_url: str) -> None:
    store = EnforcementStore(make_engine(database_url))
    first, second = claims_of(store, "enforcer-a"), claims_of(store, "enforcer-b")
    claim(first, [0, 1])
    record(store, first, 5)
    claim(second, [0])
    assert second.usage == {KEY: 5}, "the new owner starts from the store's totals"

    with pytest.raises(PartitionTakenOver, match=r"partitions \[0\].*enforcer-a"):
        record(store, first, 9)
    assert store.load_usage(0) == {KEY: 5}, "the stale batch was rolled back whole"
    record(store, second, 7)
    assert store.load_usage(0) == {KEY: 7}
    # the partition the first replica still holds is still its own
    store.record_judgements([], [], {}, None, first.fence([1]))


def test_a_claim_waits_for_a_batch_recording_on_its_partition(postgres_url: str) -> None:
    """On PostgreSQL the claim row is locked by the batch's transaction: a claim made while
    a batch records on its partition takes effect after it, and reads its totals."""
    store = EnforcementStore(make_engine(postgres_url))
    engine: Engine = store.engine
    first, second = claims_of(store, "enforcer-a"), claims_of(store, "enforcer-b")
    claim(first, [0])
    batch_holds_lock = threading.Event()
    claimed = threading.Event()
    outcome: dict[str, object] = {}

    def takeover() -> None:
        batch_holds_lock.wait(10)
        outcome["claim"] = second.claim([0])
        claimed.set()

    thread = threading.Thread(target=takeover)
    thread.start()
    with engine.begin() as connection:
        first.fence([0])(connection)  # the batch's first statement: its claim row locked
        batch_holds_lock.set()
        assert not claimed.wait(0.5), "the claim went through while the batch recorded"
        connection.exec_driver_sql(
            'INSERT INTO usage (grant_id, "window", window_start, units) VALUES (%s, %s, %s, %s)',
            (*KEY, 11),
        )
    thread.join(10)
    epochs, totals = outcome["claim"]  # type: ignore[misc]
    assert epochs == {0: 2}
    assert totals == {KEY: 11}, "the new owner's totals include the batch committed first"
