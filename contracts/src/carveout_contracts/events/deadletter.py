"""``carveout.deadletter``: what a consumer set aside, and what an operator re-drove;
keyed by source topic."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    Field,
    NonNegativeInt,
)

from .. import topics
from ..common import (
    Frozen,
)
from .envelope import Envelope

__all__ = [
    "DeadLetterEvent",
    "DeadLetteredData",
    "MessageDeadLettered",
    "MessageRedriven",
    "RedrivenData",
]


class DeadLetteredData(Frozen):
    source_topic: str
    source_partition: NonNegativeInt | None = None
    source_offset: NonNegativeInt | None = None
    source_key: str | None = None
    consumer: str = Field(description="The service (consumer group) that gave up on the message.")
    reason: Literal[
        "bad_json",
        "unknown_type",
        "unsupported_version",
        "invalid",
        "too_large",
        "failed",
        "bad_signature",
    ]
    error: str
    payload: str = Field(
        description="The original message value: UTF-8 text, or base64; when ``truncated``, "
        "only its first bytes (base64)."
    )
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    headers: dict[str, str] = Field(default_factory=dict)
    truncated: bool = Field(
        False,
        description="The value was too large to keep whole: ``payload`` holds its head; "
        "``size`` and ``sha256`` identify it at its source position.",
    )
    size: NonNegativeInt | None = Field(None, description="The original value's size in bytes.")
    sha256: str | None = Field(None, description="The original value's SHA-256, in hex.")


class RedrivenData(Frozen):
    entry_id: UUID = Field(description="The event_id of the dead-letter entry re-driven.")
    source_topic: str = Field(description="Where the original bytes were published again.")
    partition: NonNegativeInt | None = Field(None, description="Where the copy landed.")
    offset: NonNegativeInt | None = None
    by: str = Field(description="Who re-drove it (the operator's login).")


class MessageDeadLettered(Envelope, topic=topics.DEADLETTER, key=lambda data: data.source_topic):
    """A consumer could not process a message and set it aside, with the reason.

    Produced by whichever service consumed it; keyed by the source topic.
    """

    type: Literal["message.dead_lettered"] = "message.dead_lettered"
    version: Literal[1] = 1
    data: DeadLetteredData


class MessageRedriven(Envelope, topic=topics.DEADLETTER, key=lambda data: data.source_topic):
    """An operator re-drove a dead-lettered message: its original bytes were published again
    to its source topic, with its key and headers.

    Produced by ``carveout dlq redrive``; keyed by the source topic, like the entry it names.
    """

    type: Literal["message.redriven"] = "message.redriven"
    version: Literal[1] = 1
    data: RedrivenData


DeadLetterEvent = Annotated[MessageDeadLettered | MessageRedriven, Field(discriminator="type")]
"""The events of ``carveout.deadletter``."""
