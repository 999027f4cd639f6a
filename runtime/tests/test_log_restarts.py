"""A topic restarted from zero: told by its ends going down; what a store holds is put
back, what was on the log and not handled is counted."""

from __future__ import annotations

from types import SimpleNamespace

from carveout_runtime.log_restarts import (
    HandledOffsets,
    LogRestartWatch,
    lost_records,
    restarted,
)


def test_an_end_going_down_is_a_restart_and_growing_is_not() -> None:
    assert restarted({0: 10, 1: 4}, {0: 2, 1: 4})
    assert not restarted({0: 10, 1: 4}, {0: 10, 1: 9})
    assert not restarted({0: 10}, {1: 0}), "a partition not seen before says nothing"


def test_lost_records_count_what_was_on_the_log_beyond_what_was_handled() -> None:
    assert lost_records({0: 25, 1: 7}, {0: 5, 1: 7}) == 20
    assert lost_records({0: 25}, {0: 30}) == 0
    assert lost_records({0: 25, 3: 9}, {0: 25}) == 0, "another replica's partition"


def record(partition: int, offset: int) -> SimpleNamespace:
    return SimpleNamespace(partition=partition, offset=offset)


async def test_a_restart_puts_back_every_topic_a_store_holds_and_counts_the_lost() -> None:
    put_back: list[str] = []

    def restore(topic: str):  # type: ignore[no-untyped-def]
        async def run() -> int:
            put_back.append(topic)
            return 3

        return run

    # The consumer fetched further than the broker lists (a batch's end).
    access = HandledOffsets(highwaters=lambda: {0: (25, 1.0)})
    watch = LogRestartWatch(
        "enforcement",
        "127.0.0.1:1",
        {"carveout.breaches": restore("carveout.breaches")},
        {"carveout.access": access},
        pulse="carveout.acks",
    )
    await watch.check({"carveout.access": {0: 1}, "carveout.acks": {0: 4}}, at_start=True)
    for offset in range(5):
        access.handled(record(0, offset))
    await watch.check({"carveout.access": {0: 1}, "carveout.acks": {0: 6}}, at_start=False)
    assert put_back == [] and watch.restarts == 0

    # Only the heartbeats' topic shows it, and that is enough.
    await watch.check({"carveout.access": {0: 1}, "carveout.acks": {0: 1}}, at_start=False)
    assert watch.restarts == 1
    assert put_back == ["carveout.breaches"]
    assert watch.lost == {"carveout.access": 20}

    # The fetches of the old log no longer count; the new log's do.
    access.highwaters = lambda: {0: (25, 0.5)}
    await watch.check({"carveout.access": {0: 3}, "carveout.acks": {0: 2}}, at_start=False)
    assert access.highest == {0: 3}
    assert watch.restarts == 1


async def test_at_start_an_empty_topic_is_put_back_and_a_missing_one_is_not_news() -> None:
    put_back: list[int] = []

    async def restore() -> int:
        put_back.append(1)
        return 0

    watch = LogRestartWatch("grant", "127.0.0.1:1", {"carveout.grants": restore})
    await watch.check({"carveout.grants": {}}, at_start=True)
    assert put_back == []
    await watch.check({"carveout.grants": {0: 0}}, at_start=True)
    assert put_back == [1]
    await watch.check({"carveout.grants": {0: 0}}, at_start=False)
    assert put_back == [1]


async def test_with_the_broker_s_epoch_a_new_epoch_is_the_restart_whatever_the_ends() -> None:
    put_back: list[int] = []

    async def restore() -> int:
        put_back.append(1)
        return 1

    watch = LogRestartWatch("grant", "127.0.0.1:1", {"carveout.grants": restore})
    await watch.check({"carveout.grants": {0: 5}}, at_start=True, epoch="1")
    await watch.check({"carveout.grants": {0: 3}}, at_start=False, epoch="1")
    assert put_back == [] and watch.restarts == 0, "ends alone do not tell, with an epoch"
    # The new log grew past the old one between two looks: the epoch still tells.
    await watch.check({"carveout.grants": {0: 9}}, at_start=False, epoch="2")
    assert put_back == [1] and watch.restarts == 1


def test_partitions_handed_away_are_not_counted_lost_here() -> None:
    handled = HandledOffsets()
    for offset in range(3):
        handled.handled(record(0, offset))
        handled.handled(record(1, offset))
    handled.observe({0: 10, 1: 10})
    handled.forget([1])  # the group gave partition 1 to another replica
    assert handled.restart(now_ms=1.0) == 7
