"""Turning events into Kafka records and back, with upcasting and clear poison reasons."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

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
    """Describe a message set aside, keeping its original bytes so it can be re-driven."""
    raw = value or b""
    try:
        payload, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(raw).decode(), "base64"
    pairs = record_headers.items() if isinstance(record_headers, Mapping) else record_headers
    return DeadLetteredData.model_validate(
        {
            "source_topic": source_topic,
            "source_partition": partition,
            "source_offset": offset,
            "source_key": key.decode("utf-8", "replace") if key is not None else None,
            "consumer": consumer,
            "reason": reason,
            "error": error[:4000],
            "payload": payload,
            "payload_encoding": encoding,
            "headers": {k: (v or b"").decode("utf-8", "replace") for k, v in pairs},
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


def original_value(data: DeadLetteredData) -> bytes:
    if data.payload_encoding == "base64":
        return base64.b64decode(data.payload)
    return data.payload.encode()
