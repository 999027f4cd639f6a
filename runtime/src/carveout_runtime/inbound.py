"""A consumed record as a handler sees it: where the log put it, when, and its trace.

Handlers take it as an argument (``process(event, inbound)``), live and in a replay
alike, so what decides which grants cover an access or which subscriptions hear an event
(the log's append time) is visible in every signature and set by tests directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import telemetry
from .retries import ConsumerHealth


@dataclass(frozen=True, slots=True)
class Inbound:
    """One consumed record's position, append time, trace context and value."""

    topic: str
    partition: int
    offset: int
    appended_ms: int | None
    """When the log received the record (LogAppendTime, epoch ms); ``None`` when unknown."""
    traceparent: str | None
    """The record's own W3C ``traceparent`` header."""
    value: bytes = b""
    health: ConsumerHealth | None = None
    """The live consumer delivering it, which waits out an unavailable store without
    bound and shows as stalled meanwhile; ``None`` in a replay (bounded attempts)."""

    @classmethod
    def of(cls, record: Any, health: ConsumerHealth | None = None) -> Inbound:
        """The inbound view of an aiokafka ``ConsumerRecord`` (or anything shaped like one)."""
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            appended_ms=getattr(record, "timestamp", None),
            traceparent=telemetry.record_traceparent(record),
            value=record.value or b"",
            health=health,
        )

    @classmethod
    def at(
        cls, appended_ms: int | None, topic: str = "", traceparent: str | None = None
    ) -> Inbound:
        """A record known only by its append time: for tests and in-process callers."""
        return cls(topic, 0, 0, appended_ms, traceparent)

    def cause_traceparent(self) -> str | None:
        """The context that work this record causes continues: the span processing it when
        tracing is on, else the record's own ``traceparent``."""
        return telemetry.inject() or self.traceparent
