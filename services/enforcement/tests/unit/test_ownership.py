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
