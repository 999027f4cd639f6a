"""How ``carveout tail`` shows a record: one line of JSON for scripts, or one line of
rich markup for people (when, type, key and the fields that matter for its type)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape

SUMMARY_FIELDS: dict[str, tuple[str, ...]] = {
    "grant.issued": ("grant_id", "carveout_id", "grantee.id", "model_id", "valid_until"),
    "grant.amended": ("grant_id", "version", "valid_until", "conditions", "reason"),
    "grant.suspended": ("grant_id", "version", "cause", "reason"),
    "grant.reinstated": ("grant_id", "version", "cause", "reason"),
    "carveout.revoked": ("carveout_id", "grant_ids", "cause", "reason"),
    "access.recorded": (
        "grantee_id",
        "model_id",
        "user_country",
        "deployment_region",
        "purpose",
        "safeguards",
        "units",
    ),
    "condition.breached": ("severity", "grant_id", "grantee_id", "violations", "request_id"),
    "notification.delivered": ("source_event_type", "channel", "address", "attempts"),
    "notification.failed": ("source_event_type", "channel", "address", "attempts", "error"),
    "message.dead_lettered": (
        "consumer",
        "reason",
        "source_topic",
        "source_partition",
        "source_offset",
        "error",
    ),
    "message.redriven": ("entry_id", "source_topic", "partition", "offset", "by"),
}
"""The ``data`` fields a pretty line shows for each event type, in order."""

SUMMARY_WIDTH = 200


def parse(value: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """``(event, None)`` for a JSON object, else ``(None, why not)``."""
    if value is None:
        return None, "empty value"
    try:
        event = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(event, dict):
        return None, "not a JSON object"
    return event, None


def _text(value: bytes | None) -> str:
    if value is None:
        return ""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


def json_line(record: Any) -> str:
    """One line of JSON for a record: the event as published (compacted), or, for a value
    that is not a JSON object, ``{"undecodable": why, "topic", "partition", "offset",
    "key", "value"}`` (the value as text, or ``base64:...``)."""
    event, problem = parse(record.value)
    if event is None:
        event = {
            "undecodable": problem,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": _text(record.key) or None,
            "value": _text(record.value),
        }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def _lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _show(value: Any) -> str:
    if isinstance(value, list):
        items = [v.get("kind", v.get("id", "…")) if isinstance(v, dict) else v for v in value]
        return ",".join(str(i) for i in items) or "[]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def summary(event_type: str, data: Any) -> str:
    """``field=value`` pairs of the ``data`` fields that matter for ``event_type``."""
    if not isinstance(data, dict):
        return _show(data)
    fields = SUMMARY_FIELDS.get(event_type)
    if fields is None:  # an event type this tool does not know: its first plain fields
        fields = tuple(k for k, v in data.items() if not isinstance(v, dict | list))[:6]
    pairs = []
    for name in fields:
        value = _lookup(data, name)
        if value is not None:
            pairs.append(f"{name}={_show(value)}")
    text = " ".join(pairs)
    return text if len(text) <= SUMMARY_WIDTH else text[: SUMMARY_WIDTH - 1] + "…"


def _when(event: dict[str, Any], record: Any) -> str:
    raw = event.get("occurred_at")
    moment: datetime | None = None
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            moment = None
    if moment is None:
        moment = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def pretty_line(record: Any) -> str:
    """One line of rich markup for a record: when, type, key, what (position dimmed)."""
    where = f"[dim]{record.partition}:{record.offset}[/]"
    event, problem = parse(record.value)
    if event is None:
        preview = _text(record.value)[:120]
        return f"{where} [red]not an event ({escape(problem or '')})[/] {escape(preview)}"
    event_type = str(event.get("type", "?"))
    key = event.get("key", _text(record.key))
    return (
        f"{where} [dim]{_when(event, record)}[/] [bold cyan]{escape(event_type)}[/] "
        f"[magenta]{escape(str(key))}[/] {escape(summary(event_type, event.get('data')))}"
    )
