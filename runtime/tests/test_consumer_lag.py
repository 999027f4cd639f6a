"""Readiness reads a consumer's lag: none while it has not joined its group, none either
when the group gave it no partition (more replicas than partitions)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from carveout_runtime.kafka import consumer_lag


def consumer(assignment: Any) -> Any:
    return SimpleNamespace(
        assignment=lambda: set(),
        _subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment)),
    )


async def test_a_consumer_that_has_not_joined_has_no_lag_yet() -> None:
    assert await consumer_lag(consumer(None)) is None
    assert await consumer_lag(SimpleNamespace(assignment=lambda: set())) is None
    assert await consumer_lag(None) is None


async def test_a_member_given_no_partition_is_caught_up() -> None:
    assert await consumer_lag(consumer(SimpleNamespace(tps=frozenset()))) == 0
