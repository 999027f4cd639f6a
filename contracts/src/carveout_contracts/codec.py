"""Turning events into Kafka records and back, with upcasting and clear poison reasons."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from . import limits
from .events import (
    CURRENT_VERSION,
    EVENT_BY_TYPE,
    TOPIC_UNIONS,
    DeadLetteredData,
    Envelope,
    MessageDeadLettered,
)

CONTENT_TYPE = "application/json"

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns one envelope (as a dict) of version N into version N + 1 of the same type."""

UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""``(type, version) -> upcaster``. Register one for every breaking change of an event."""


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


PoisonReason = Literal["bad_json", "unknown_type", "unsupported_version", "invalid"]


class PoisonMessage(ValueError):
    """A message no consumer can ever process as it stands: it belongs in the dead-letter topic."""

    def __init__(self, reason: PoisonReason, error: str) -> None:
        super().__init__(f"{reason}: {error}")
        self.reason: PoisonReason = reason
        self.error = error


_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    topic: TypeAdapter(union) for topic, union in TOPIC_UNIONS.items()
}


_WIRE = {"wire": True}


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "(message)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def upcast(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring an envelope of an older ``version`` up to the current one."""
    event_type = raw.get("type")
    if not isinstance(event_type, str) or event_type not in CURRENT_VERSION:
        raise PoisonMessage("unknown_type", f"unknown event type {event_type!r}")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise PoisonMessage("invalid", f"version: must be an integer, got {version!r}")
    current = CURRENT_VERSION[event_type]
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise PoisonMessage(
                "unsupported_version", f"no upcaster for {event_type} version {version}"
            )
        raw = step(raw)
        version = int(raw["version"])
    if version > current:
        raise PoisonMessage(
            "unsupported_version",
            f"{event_type} version {version} is newer than this consumer knows ({current})",
        )
    return raw


def decode(topic: str, value: bytes | str | None) -> Any:
    """Parse one message value from ``topic`` into its event model.

    Raises :class:`PoisonMessage` with the reason when the value can never be processed.
    """
    adapter = _ADAPTERS.get(topic)
    if adapter is None:
        raise PoisonMessage("unknown_type", f"no events are defined for topic {topic!r}")
    if value is None:
        raise PoisonMessage("bad_json", "empty message value")
    try:
        return adapter.validate_json(value, context=_WIRE)
    except ValidationError:
        pass  # the slow path below names the exact problem, and upcasts old versions
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoisonMessage("bad_json", f"not JSON: {exc}") from None
    except RecursionError:  # a few kilobytes of "[[[[": never an event, never a crash
        raise PoisonMessage("bad_json", "not JSON: nested deeper than any event") from None
    if not isinstance(raw, dict):
        raise PoisonMessage("invalid", "an event must be a JSON object")
    raw = upcast(raw)
    if raw["type"] not in _types_of(topic):
        raise PoisonMessage(
            "unknown_type", f"event type {raw['type']!r} does not belong on {topic}"
        )
    try:
        return adapter.validate_python(raw, context=_WIRE)
    except ValidationError as exc:
        raise PoisonMessage("invalid", _describe(exc)) from None


def _types_of(topic: str) -> set[str]:
    return {t for t, cls in EVENT_BY_TYPE.items() if topic == cls.TOPIC}


def encode_value(event: Envelope) -> bytes:
    return event.model_dump_json().encode()


def new_traceparent() -> str:
    """A W3C ``traceparent`` starting a new trace, for events no trace context reached."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def text_headers(traceparent: str | None = None) -> list[tuple[str, str]]:
    """The headers every event carries: ``content-type`` and a W3C ``traceparent``."""
    return [("content-type", CONTENT_TYPE), ("traceparent", traceparent or new_traceparent())]


def headers(traceparent: str | None = None) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in text_headers(traceparent)]


DEAD_LETTER_KEY_CHARS = 256
"""Characters of a record's key a dead letter keeps (keys are ids, far shorter)."""
DEAD_LETTER_HEADERS = 16
"""Headers of a record a dead letter keeps (events carry two)."""
DEAD_LETTER_HEADER_CHARS = 256
"""Characters of a header's name or value a dead letter keeps."""
DEAD_LETTER_ERROR_CHARS = limits.MAX_REASON
"""Characters of the error a dead letter keeps."""


def clip(text: str, most: int = DEAD_LETTER_ERROR_CHARS) -> str:
    """``text`` cut to ``most`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= most else text[: most - 1] + "…"


def _payload(raw: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
    """The value as UTF-8 text when that is no larger as JSON than base64 would be.

    Text full of control characters is not: each escapes to six bytes in JSON (200 kB of
    ``\x01`` would become 1.2 MB, more than the broker takes), so it goes as base64.
    """
    encoded = base64.b64encode(raw).decode()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return encoded, "base64"
    as_json = len(json.dumps(text, ensure_ascii=False).encode()) - 2
    return (text, "utf-8") if as_json <= len(encoded) else (encoded, "base64")


def dead_letter_data(
    *,
    source_topic: str,
    consumer: str,
    reason: str,
    error: str,
    value: bytes | None,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
    record_headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] = (),
) -> DeadLetteredData:
    """Describe a message set aside, so that it can be re-driven, in an event that always fits.

    The value is kept whole up to ``limits.DEAD_LETTER_WHOLE_BYTES``; of a larger one only
    its first ``limits.DEAD_LETTER_HEAD_BYTES``, with its size and SHA-256 (``carveout dlq
    redrive`` reads it back from its source position). Key, headers and error are clipped,
    so the dead letter stays well under the record size every consumer accepts.
    """
    raw = value or b""
    truncated = len(raw) > limits.DEAD_LETTER_WHOLE_BYTES
    if truncated:
        payload = base64.b64encode(raw[: limits.DEAD_LETTER_HEAD_BYTES]).decode()
        encoding: Literal["utf-8", "base64"] = "base64"
    else:
        payload, encoding = _payload(raw)
    pairs = record_headers.items() if isinstance(record_headers, Mapping) else record_headers
    kept: dict[str, str] = {}
    for name, header in list(pairs)[:DEAD_LETTER_HEADERS]:
        kept[clip(str(name), DEAD_LETTER_HEADER_CHARS)] = clip(
            (header or b"").decode("utf-8", "replace"), DEAD_LETTER_HEADER_CHARS
        )
    return DeadLetteredData.model_validate(
        {
            "source_topic": source_topic,
            "source_partition": partition,
            "source_offset": offset,
            "source_key": clip(key.decode("utf-8", "replace"), DEAD_LETTER_KEY_CHARS)
            if key is not None
            else None,
            "consumer": consumer,
            "reason": reason,
            "error": clip(error),
            "payload": payload,
            "payload_encoding": encoding,
            "headers": kept,
            "truncated": truncated,
            "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
        }
    )


def dead_letter_event(
    record: Any, *, consumer: str, reason: str, error: str, value: bytes | None = None
) -> MessageDeadLettered:
    """The dead-letter event for a Kafka record (anything with topic, partition, offset,
    key, value and headers, like aiokafka's ``ConsumerRecord``)."""
    data = dead_letter_data(
        source_topic=record.topic,
        consumer=consumer,
        reason=reason,
        error=error,
        value=record.value if value is None else value,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        record_headers=list(record.headers or ()),
    )
    return MessageDeadLettered(producer=consumer, key=data.source_topic, data=data)


class TruncatedDeadLetter(ValueError):
    """A dead letter keeps only the head of its value: the whole is at its source position."""


def original_value(data: DeadLetteredData) -> bytes:
    """The value a dead letter kept whole; :class:`TruncatedDeadLetter` when it kept a head."""
    if data.truncated:
        raise TruncatedDeadLetter(
            f"the dead letter keeps only the first {limits.DEAD_LETTER_HEAD_BYTES} bytes of a "
            f"{data.size}-byte value: read it from {data.source_topic} "
            f"{data.source_partition}@{data.source_offset}"
        )
    return head_value(data)


def head_value(data: DeadLetteredData) -> bytes:
    """The bytes a dead letter kept: the whole value, or its head when ``truncated``."""
    if data.payload_encoding == "base64":
        return base64.b64decode(data.payload)
    return data.payload.encode()
