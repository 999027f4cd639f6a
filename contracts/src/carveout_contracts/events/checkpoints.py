"""``carveout.checkpoints``: signed checkpoints of the transparency logs (RFC 6962 trees).
Produced by the enforcement service (decision logs) and the grant service (grant history);
keyed by the log's origin."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeInt, StringConstraints

from .. import limits, topics
from ..common import Frozen, Identifier
from .envelope import Envelope

__all__ = ["CheckpointEvent", "CheckpointSigned", "CheckpointSignedData"]

Base64Hash = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]
"""A SHA-256 hash in standard base64 (44 characters)."""


class CheckpointSignedData(Frozen):
    log: Identifier
    """The log's origin: ``carveout.decisions/<partition>`` or ``carveout.grants``."""
    size: NonNegativeInt
    root: Base64Hash
    note: Annotated[str, StringConstraints(max_length=limits.MAX_NOTE_BYTES)]
    """The checkpoint as a C2SP signed note (``tlog-checkpoint`` body, Ed25519 signature)."""


class CheckpointSigned(Envelope, topic=topics.CHECKPOINTS, key=lambda data: data.log):
    """A transparency log's service signed a checkpoint of the log (its size and root).
    Produced by the enforcement service and the grant service, at least every second while
    a log grows."""

    type: Literal["checkpoint.signed"] = "checkpoint.signed"
    version: Literal[1] = 1
    data: CheckpointSignedData


CheckpointEvent = Annotated[CheckpointSigned, Field(discriminator="type")]
"""The events of ``carveout.checkpoints``."""
