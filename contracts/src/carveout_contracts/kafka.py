"""Kafka client settings every party must use to talk to the brokers Carveout supports."""

from __future__ import annotations

from typing import Any

PRODUCER_OPTIONS: dict[str, Any] = {
    # Tansu (the embedded broker) has no idempotent or transactional producer.
    "enable_idempotence": False,
    "acks": "all",
    "linger_ms": 1,
}


def consumer_options(session_timeout_ms: int, fetch_max_wait_ms: int) -> dict[str, Any]:
    """Group consumer settings: offsets committed by us, after the store commits."""
    return {
        "auto_offset_reset": "earliest",
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": max(100, session_timeout_ms // 6),
        "rebalance_timeout_ms": session_timeout_ms,
        "fetch_max_wait_ms": fetch_max_wait_ms,
    }


async def partition_lags(consumer: Any) -> dict[tuple[str, int], int] | None:
    """Each assigned partition's lag, ``(topic, partition) -> records``, as :func:`consumer_lag`
    counts it; ``None`` while the consumer has no partitions assigned."""
    if consumer is None:
        return None
    assignment = list(consumer.assignment())
    if not assignment:
        return None
    ends = await consumer.end_offsets(assignment)
    return {
        (tp.topic, tp.partition): max(0, ends[tp] - await consumer.position(tp))
        for tp in assignment
    }


async def consumer_lag(consumer: Any) -> int | None:
    """Messages between a group consumer's positions and the ends of its partitions.

    ``None`` while the consumer has no partitions assigned (it has not joined its group).
    Positions at or past the end count as caught up.
    """
    if consumer is None:
        return None
    assignment = list(consumer.assignment())
    if not assignment:
        return None
    ends = await consumer.end_offsets(assignment)
    lag = 0
    for tp in assignment:
        position = await consumer.position(tp)
        lag += max(0, ends[tp] - position)
    return lag
