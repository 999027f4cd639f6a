"""``carveout tail TOPIC``: print a topic's events as they arrive, for people or for scripts.

The topic is read without a consumer group (partitions assigned by hand, no offsets
committed), so tailing never disturbs the services' groups and starts at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape

from carveout_contracts import topics
from carveout_runtime.logread import partitions, true_ends

SHORT_NAMES: dict[str, str] = {topic.split(".", 1)[1]: topic for topic in topics.ALL_TOPICS}
"""``grants`` -> ``carveout.grants``, and so on for every Carveout topic."""

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


class TailError(RuntimeError):
    """The topic cannot be tailed (unknown name, no broker): the message says why."""


def resolve_topic(name: str) -> str:
    """A topic's full name from its short (``grants``) or full (``carveout.grants``) name.

    Any other name with a dot in it is taken as a full topic name as it stands.
    """
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    if "." in name:
        return name
    known = ", ".join(f"{short} ({full})" for short, full in SHORT_NAMES.items())
    raise TailError(f"unknown topic {name!r}; the topics are: {known}")


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    found = await partitions(consumer, topic)
    if not found:
        raise TailError(f"topic {topic} does not exist (run `carveout topics create`)")
    return found


async def records(
    bootstrap: str,
    topic: str,
    *,
    from_beginning: bool = False,
    follow: bool = True,
    limit: int | None = None,
) -> AsyncIterator[Any]:
    """Yield ``topic``'s records (aiokafka ``ConsumerRecord``) in order within each partition.

    From the end of every partition, or from the beginning; with ``follow`` until the
    caller stops iterating, else up to the end offsets there were when it started. At
    most ``limit`` records.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        client_id="carveout-tail",
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise TailError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from None
    try:
        tps = await _partitions(consumer, topic)
        # The true ends, from a fetch's high watermark: an offset look-up (seek_to_end,
        # end_offsets) stops at the start of the last record batch on some brokers (Tansu).
        found = await true_ends(consumer, tps)
        ends = {tp: found.get(tp, 0) for tp in tps}
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            for tp in tps:
                consumer.seek(tp, ends[tp])
        positions = {tp: await consumer.position(tp) for tp in tps}  # resolve the seeks now
        remaining = {tp for tp in tps if positions[tp] < ends[tp]}
        count = 0
        while follow or remaining:
            wanted = tps if follow else sorted(remaining, key=lambda tp: tp.partition)
            fetched = await consumer.getmany(*wanted, timeout_ms=200)
            for tp in sorted(fetched, key=lambda tp: tp.partition):
                for record in fetched[tp]:
                    if not follow and record.offset >= ends[tp]:
                        break
                    yield record
                    count += 1
                    if limit is not None and count >= limit:
                        return
            if not follow:
                remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- formatting


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


async def tail(
    bootstrap: str,
    topic: str,
    emit: Callable[[str], None],
    *,
    as_json: bool = False,
    from_beginning: bool = False,
    follow: bool = True,
    limit: int | None = None,
) -> int:
    """Print ``topic``'s records through ``emit``, one line each; returns how many."""
    count = 0
    async for record in records(
        bootstrap, topic, from_beginning=from_beginning, follow=follow, limit=limit
    ):
        emit(json_line(record) if as_json else pretty_line(record))
        count += 1
    return count


# --------------------------------------------------------------------------- command


def register(app: typer.Typer, console: Console, err: Console) -> None:
    """Add ``carveout tail`` to the ``carveout`` command."""

    @app.command("tail")
    def tail_command(
        topic: Annotated[
            str,
            typer.Argument(
                help="grants, access, breaches, notifications or deadletter "
                "(or the full name, e.g. carveout.grants)."
            ),
        ],
        from_beginning: Annotated[
            bool, typer.Option("--from-beginning", help="Start at the oldest event kept.")
        ] = False,
        as_json: Annotated[
            bool,
            typer.Option(
                "--json",
                help="One JSON object a line (JSON lines): each event as published; a value "
                'that is not a JSON object as {"undecodable": why, "topic", "partition", '
                '"offset", "key", "value"}.',
            ),
        ] = False,
        limit: Annotated[
            int | None, typer.Option(min=1, help="Stop after this many events.")
        ] = None,
        follow: Annotated[
            bool,
            typer.Option(
                "--follow/--no-follow",
                help="Keep waiting for new events (Ctrl-C stops), or stop at the end of the "
                "topic as it was when the command started.",
            ),
        ] = True,
        bootstrap: Annotated[
            str,
            typer.Option(envvar="CARVEOUT_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers."),
        ] = "127.0.0.1:9092",
    ) -> None:
        """Print a topic's events as they arrive, one line each: when, type, key, what.

        New events only, unless --from-beginning.
        Read without a consumer group: tailing never moves the services' offsets.
        """
        try:
            full = resolve_topic(topic)
        except TailError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None

        def emit(line: str) -> None:
            if as_json:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            else:
                console.print(line, highlight=False, soft_wrap=True)

        if not as_json and follow:
            start = "the beginning" if from_beginning else "new events"
            err.print(f"[dim]tailing {full} from {start} (Ctrl-C stops)[/]", highlight=False)
        try:
            shown = asyncio.run(
                tail(
                    bootstrap,
                    full,
                    emit,
                    as_json=as_json,
                    from_beginning=from_beginning,
                    follow=follow,
                    limit=limit,
                )
            )
        except TailError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            return
        if not as_json and not follow and shown == 0:
            if from_beginning:
                err.print(f"{full} is empty", highlight=False)
            else:
                err.print(f"no new events on {full} (--from-beginning shows older ones)")
