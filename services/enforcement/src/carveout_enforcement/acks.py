"""Acknowledgements (DESIGN §12): this replica tells the grant service which grant versions
its decisions apply, and every second that it is alive and how far it has applied the
grants log.

The grants consumer only puts an ack on a bounded queue (no I/O, never waiting), and a
background task publishes it: a slow or absent broker must not delay the projection, so
when the queue is full the ack is dropped and counted. Nothing is lost by that: the next
heartbeat's positions show the versions applied, and the grant service reads them so.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from inspect import isawaitable
from typing import Any

from prometheus_client import Counter

from carveout_contracts import (
    EnforcementApplied,
    EnforcementAppliedData,
    EnforcementHeartbeat,
    EnforcementHeartbeatData,
    GrantEvent,
    codec,
    limits,
    topics,
)
from carveout_contracts.common import utcnow
from carveout_runtime.inbound import Inbound

from .domain import GrantView

log = logging.getLogger("carveout.enforcement.acks")
PRODUCER = "enforcement"
ACK_NAMESPACE = uuid.UUID("6f1c3a52-8a0e-4f43-9d53-2b2f5e1c7a10")
"""Acks' event ids are derived from (enforcer, grant, version): one applying, one id."""
HEARTBEAT_EVERY_S = 1.0
PUBLISH_WITHIN_S = 5.0
"""Longest one publish may take before it is given up (a heartbeat follows anyway)."""
ACKS_DROPPED = Counter(
    "carveout_acks_dropped",
    "Acknowledgements not published (queue full or broker unavailable); heartbeats cover them.",
)

Publish = Callable[[bytes, str, bytes, str | None], Awaitable[Any]]
"""``(value, topic, key, traceparent)``: publish signed; may return a delivery to await."""


def default_enforcer_id(port: int, host: str | None = None) -> str:
    """This machine's name and the service's port: two replicas on one machine differ."""
    name = (host or socket.gethostname() or "enforcement").strip() or "enforcement"
    suffix = f":{port}"
    return name[: limits.MAX_ID - len(suffix)] + suffix


def ack_event_id(enforcer_id: str, grant_id: str, version: int) -> uuid.UUID:
    return uuid.uuid5(ACK_NAMESPACE, f"{enforcer_id}\n{grant_id}\n{version}")


@dataclass(frozen=True, slots=True)
class PendingAck:
    grant_id: str
    version: int
    grant_event_id: uuid.UUID
    applied_at: datetime
    traceparent: str | None


@dataclass(eq=False)
class Acknowledger:
    """Publishes this enforcer's acks (queued by :meth:`applied`) and heartbeats."""

    enforcer_id: str
    positions: Callable[[], Awaitable[Mapping[int, int]]]
    """For each grants partition, the next offset the projection has applied."""
    publish: Publish
    queue_max: int = 4096
    clock: Callable[[], datetime] = utcnow
    heartbeat_every_s: float = HEARTBEAT_EVERY_S
    dropped: int = field(default=0, init=False)
    _queue: asyncio.Queue[PendingAck] = field(init=False)

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.queue_max)

    def applied(self, event: GrantEvent, views: Sequence[GrantView], inbound: Inbound) -> None:
        """The projection applied ``event``: its decisions reflect ``views`` from now.
        Queues one ack per view, never waiting."""
        now = self.clock()
        traceparent = inbound.cause_traceparent()
        for view in views:
            ack = PendingAck(view.grant_id, view.version, event.event_id, now, traceparent)
            try:
                self._queue.put_nowait(ack)
            except asyncio.QueueFull:
                self._drop("the queue of acknowledgements is full")

    def _drop(self, why: str) -> None:
        if self.dropped % 1000 == 0:  # the first, then every thousandth: never a flood
            log.warning("%s: acknowledgement left to the heartbeats (%d so far)", why, self.dropped)
        self.dropped += 1
        ACKS_DROPPED.inc()

    def ack_event(self, ack: PendingAck) -> EnforcementApplied:
        data = EnforcementAppliedData(
            enforcer_id=self.enforcer_id,
            grant_id=ack.grant_id,
            version=ack.version,
            grant_event_id=ack.grant_event_id,
            applied_at=ack.applied_at,
        )
        return EnforcementApplied(
            event_id=ack_event_id(self.enforcer_id, ack.grant_id, ack.version),
            occurred_at=ack.applied_at,
            producer=PRODUCER,
            key=EnforcementApplied.key_of(data),
            data=data,
        )

    def heartbeat_event(self, positions: Mapping[int, int]) -> EnforcementHeartbeat:
        at = self.clock()
        data = EnforcementHeartbeatData(
            enforcer_id=self.enforcer_id, grants_positions=dict(positions), at=at
        )
        key = EnforcementHeartbeat.key_of(data)
        return EnforcementHeartbeat(occurred_at=at, producer=PRODUCER, key=key, data=data)

    async def _send(
        self, event: EnforcementApplied | EnforcementHeartbeat, trace: str | None
    ) -> None:
        value, key = codec.encode_value(event), event.key.encode()
        sent = await self.publish(value, topics.ACKS, key, trace)
        if isawaitable(sent):
            await sent

    async def publish_acks(self) -> None:
        """Publish queued acks as they come, in order, for the life of the process."""
        while True:
            ack = await self._queue.get()
            try:
                async with asyncio.timeout(PUBLISH_WITHIN_S):
                    await self._send(self.ack_event(ack), ack.traceparent)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._drop(f"publishing an acknowledgement failed ({exc!r})")

    async def beat(self) -> None:
        """Publish one heartbeat; a failure is logged (the next one follows)."""
        try:
            async with asyncio.timeout(PUBLISH_WITHIN_S):
                await self._send(self.heartbeat_event(await self.positions()), None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("publishing a heartbeat failed: %r", exc)

    async def beat_forever(self) -> None:
        """A heartbeat every ``heartbeat_every_s``, on a fixed cadence."""
        next_at = time.monotonic()
        while True:
            await self.beat()
            next_at = max(next_at + self.heartbeat_every_s, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())
