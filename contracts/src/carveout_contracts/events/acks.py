"""``carveout.acks``: what each enforcement replica has applied, and that it is alive.
Produced by the enforcement service; keyed by grant id (heartbeats: by enforcer id)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, NonNegativeInt, PositiveInt

from .. import limits, topics
from ..common import Frozen, Identifier, UtcDatetime
from .envelope import Envelope

__all__ = [
    "AckEvent",
    "EnforcementApplied",
    "EnforcementAppliedData",
    "EnforcementHeartbeat",
    "EnforcementHeartbeatData",
]


class EnforcementAppliedData(Frozen):
    enforcer_id: Identifier
    grant_id: Identifier
    version: PositiveInt
    grant_event_id: UUID
    """The grant event that made this version."""
    applied_at: UtcDatetime
    """From when this replica's decisions reflect the version."""


class EnforcementApplied(Envelope, topic=topics.ACKS, key=lambda data: data.grant_id):
    """An enforcement replica applied a grant version: its decisions reflect it from
    ``applied_at``. Produced by the enforcement service, once per replica and version."""

    type: Literal["enforcement.applied"] = "enforcement.applied"
    version: Literal[1] = 1
    data: EnforcementAppliedData


class EnforcementHeartbeatData(Frozen):
    enforcer_id: Identifier
    grants_positions: dict[NonNegativeInt, NonNegativeInt] = Field(max_length=limits.MAX_PARTITIONS)
    """For each ``carveout.grants`` partition, the next offset the replica has applied."""
    at: UtcDatetime


class EnforcementHeartbeat(Envelope, topic=topics.ACKS, key=lambda data: data.enforcer_id):
    """An enforcement replica is alive and has applied the grants log up to its positions.
    Produced by the enforcement service every second; alive while under 3 s old."""

    type: Literal["enforcement.heartbeat"] = "enforcement.heartbeat"
    version: Literal[1] = 1
    data: EnforcementHeartbeatData


AckEvent = Annotated[EnforcementApplied | EnforcementHeartbeat, Field(discriminator="type")]
"""The events of ``carveout.acks``."""
