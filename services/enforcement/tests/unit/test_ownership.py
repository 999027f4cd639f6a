"""Which batch a replica may still record: the claim rule alone."""

from __future__ import annotations

from carveout_enforcement.ownership import superseded


def test_a_partition_claimed_by_this_replica_at_its_epoch_is_kept() -> None:
    assert superseded([0, 1], "a", {0: 3, 1: 1}, {0: ("a", 3), 1: ("a", 1)}) == []


def test_a_newer_claim_by_another_replica_supersedes_this_one() -> None:
    assert superseded([0, 1], "a", {0: 3, 1: 1}, {0: ("b", 4), 1: ("a", 1)}) == [0]


def test_a_newer_claim_by_this_replica_itself_supersedes_the_older_one() -> None:
    """A batch judged before a reassignment to the same replica read totals from before."""
    assert superseded([0], "a", {0: 3}, {0: ("a", 4)}) == [0]


def test_a_partition_claimed_by_another_replica_and_never_by_this_one_is_lost() -> None:
    assert superseded([2], "a", {}, {2: ("b", 1)}) == [2]


def test_a_partition_nobody_claimed_is_nobody_s_to_lose() -> None:
    """A consumer outside a group (tools, tests) records as before."""
    assert superseded([5], "a", {}, {}) == []


async def test_only_partitions_that_went_to_another_replica_are_handed_away() -> None:
    from types import SimpleNamespace

    from carveout_enforcement.ownership import ClaimOnAssignment
    from carveout_runtime.retries import ConsumerHealth

    handed: list[list[int]] = []
    claims = SimpleNamespace(
        release=lambda partitions: None,
        claim=lambda partitions: ({p: 1 for p in partitions}, {}),
        adopt=lambda epochs, totals: None,
    )
    listener = ClaimOnAssignment(
        claims,  # type: ignore[arg-type]
        ConsumerHealth("enforcement", "carveout.access"),
        released=handed.append,
    )

    def tps(*partitions: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(partition=p) for p in partitions]

    await listener.on_partitions_revoked(tps(0, 1, 2))
    await listener.on_partitions_assigned(tps(0, 2))
    assert handed == [[1]]
    # a rebalance that gives everything back (a broker restart's) hands nothing away
    await listener.on_partitions_revoked(tps(0, 2))
    await listener.on_partitions_assigned(tps(0, 2))
    assert handed == [[1]]
