"""Kafka client settings every party must use to talk to the brokers Carveout supports."""

from __future__ import annotations

from typing import Any

PRODUCER_OPTIONS: dict[str, Any] = {
    # Tansu (the embedded broker) has no idempotent or transactional producer.
    "enable_idempotence": False,
    "acks": "all",
    "linger_ms": 1,
}


async def partition_lags(consumer: Any) -> dict[tuple[str, int], int] | None:
    """Each assigned partition's lag, ``(topic, partition) -> records``, as :func:`consumer_lag`
    counts it; ``None`` while the consumer has not joined its group. A member the group gave
    no partition (more replicas than partitions) has none, and no lag."""
    if consumer is None:
        return None
    assignment = list(consumer.assignment())
    if not assignment:
        return {} if _assigned_nothing(consumer) else None
    ends = await consumer.end_offsets(assignment)
    return {
        (tp.topic, tp.partition): max(0, ends[tp] - await consumer.position(tp))
        for tp in assignment
    }


def _assigned_nothing(consumer: Any) -> bool:
    """Whether the group has assigned this consumer its (empty) share: aiokafka keeps the
    assignment of its subscription, which stays unset until the group answers."""
    state = getattr(consumer, "_subscription", None)
    subscription = getattr(state, "subscription", None)
    return getattr(subscription, "assignment", None) is not None


async def consumer_lag(consumer: Any) -> int | None:
    """Messages between a group consumer's positions and the ends of its partitions.

    ``None`` while the consumer has no partitions assigned (it has not joined its group).
    Positions at or past the end count as caught up.
    """
    lags = await partition_lags(consumer)
    return None if lags is None else sum(lags.values())
