"""``carveout dlq list|redrive``: inspect the dead-letter topic and re-drive its entries.

An *entry* is a ``message.dead_lettered`` event: the original bytes a consumer could not
process, with its key and headers, the reason, the error, the source topic, partition
and offset, and the service that set it aside. Its id is the event's ``event_id``.

Re-driving publishes the original bytes again to the source topic, with the original
key and headers (plus ``carveout-redriven-from: <entry id>``), and records the fact in
the log itself: a ``message.redriven`` event on ``carveout.deadletter`` naming the entry
and where the copy landed. No state is kept anywhere else, so every operator sees the
same history.

Re-driving twice doubles nothing: every consumer skips an event whose ``event_id`` it
has processed. A record that is still poison is simply dead-lettered again, as a new
entry.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from carveout_contracts import PoisonMessage, codec, decode, topics
from carveout_contracts.events import MessageDeadLettered, MessageRedriven, RedrivenData
from carveout_runtime.kafka import PRODUCER_OPTIONS
from carveout_runtime.logread import read_all

from .tail import SHORT_NAMES, TailError, resolve_topic

REDRIVE_HEADER = "carveout-redriven-from"
"""Header added to a re-driven record: the id of the entry it came from."""

PRODUCER = "carveout-cli"

REASONS = ("bad_json", "unknown_type", "unsupported_version", "invalid", "too_large", "failed")

SOURCE_READ_S = 10.0
"""How long a re-drive waits for a truncated entry's original record from its source."""


class DlqError(RuntimeError):
    """An operator error (unknown id, no broker): the message says what to do."""


@dataclass(frozen=True)
class Redrive:
    """One re-drive of an entry, as recorded on the dead-letter topic."""

    at: datetime
    by: str
    partition: int | None
    offset: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "by": self.by,
            "partition": self.partition,
            "offset": self.offset,
        }


@dataclass
class Entry:
    """A dead-lettered message, and where it sits on the dead-letter topic."""

    event: MessageDeadLettered
    partition: int
    offset: int
    redrives: list[Redrive] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.event.event_id)

    @property
    def at(self) -> datetime:
        return self.event.occurred_at

    @property
    def service(self) -> str:
        return self.event.data.consumer

    @property
    def source(self) -> tuple[str, int | None, int | None]:
        data = self.event.data
        return data.source_topic, data.source_partition, data.source_offset

    def original(self) -> bytes:
        """The original value, when the entry kept it whole (see :func:`read_original`)."""
        return codec.original_value(self.event.data)

    @property
    def truncated(self) -> bool:
        return self.event.data.truncated

    def key(self) -> bytes | None:
        key = self.event.data.source_key
        return key.encode() if key is not None else None

    def headers(self) -> list[tuple[str, bytes]]:
        kept = [(k, v.encode()) for k, v in self.event.data.headers.items() if k != REDRIVE_HEADER]
        return [*kept, (REDRIVE_HEADER, self.id.encode())]

    def preview(self, width: int = 60) -> str:
        data = self.event.data
        if data.truncated:
            return f"{data.size} bytes, sha256 {(data.sha256 or '?')[:12]}… (head only)"
        text = data.payload if data.payload_encoding == "utf-8" else f"base64:{data.payload}"
        text = " ".join(text.split())
        return text if len(text) <= width else text[: width - 1] + "…"

    def to_json(self) -> dict[str, Any]:
        data = self.event.data
        return {
            "id": self.id,
            "dead_lettered_at": self.at.isoformat().replace("+00:00", "Z"),
            "service": data.consumer,
            "reason": data.reason,
            "error": data.error,
            "source": {
                "topic": data.source_topic,
                "partition": data.source_partition,
                "offset": data.source_offset,
                "key": data.source_key,
            },
            "original": {
                "value": data.payload,
                "encoding": data.payload_encoding,
                "headers": data.headers,
                "truncated": data.truncated,
                "size": data.size,
                "sha256": data.sha256,
            },
            "position": {"partition": self.partition, "offset": self.offset},
            "redriven": [r.to_json() for r in self.redrives],
        }


@dataclass
class DeadLetters:
    """Everything on the dead-letter topic: the entries, and how many records were not
    dead-letter events at all (shown, never hidden)."""

    entries: list[Entry]
    unreadable: int = 0


def fold(records: Iterable[Any]) -> DeadLetters:
    """Entries from dead-letter records, with the re-drives recorded for each attached."""
    entries: dict[str, Entry] = {}
    redrives: list[MessageRedriven] = []
    unreadable = 0
    for record in records:
        try:
            event = decode(topics.DEADLETTER, record.value)
        except PoisonMessage:
            unreadable += 1
            continue
        if isinstance(event, MessageRedriven):
            redrives.append(event)
        else:
            entries[str(event.event_id)] = Entry(event, record.partition, record.offset)
    for marker in redrives:
        entry = entries.get(str(marker.data.entry_id))
        if entry is not None:
            data = marker.data
            entry.redrives.append(Redrive(marker.occurred_at, data.by, data.partition, data.offset))
    ordered = sorted(entries.values(), key=lambda e: (e.at, e.partition, e.offset))
    for entry in ordered:
        entry.redrives.sort(key=lambda r: r.at)
    return DeadLetters(ordered, unreadable)


async def load(bootstrap: str) -> DeadLetters:
    """Read the whole dead-letter topic, up to its end when called (no consumer group)."""
    try:
        records = await read_all(bootstrap, [topics.DEADLETTER])
    except KafkaError as exc:
        raise DlqError(f"cannot read {topics.DEADLETTER} at {bootstrap}: {exc}") from None
    return fold(records)


def select(
    entries: Sequence[Entry],
    *,
    topic: str | None = None,
    reason: str | None = None,
    service: str | None = None,
    pending: bool = False,
    limit: int | None = None,
) -> list[Entry]:
    """The entries matching every filter given; with ``limit``, the newest that many."""
    full = resolve_topic(topic) if topic is not None else None
    chosen = [
        e
        for e in entries
        if (full is None or e.event.data.source_topic == full)
        and (reason is None or e.event.data.reason == reason)
        and (service is None or e.service == service)
        and not (pending and e.redrives)
    ]
    return chosen[-limit:] if limit is not None and limit < len(chosen) else chosen


def find(entries: Sequence[Entry], ids: Iterable[str]) -> list[Entry]:
    """The entries named by ``ids`` (whole ids or unique prefixes), in the order given.

    Raises :class:`DlqError` naming every id that matches no entry, or several.
    """
    found: list[Entry] = []
    unknown: list[str] = []
    ambiguous: list[str] = []
    for wanted in ids:
        prefix = wanted.strip().lower()
        matches = [e for e in entries if e.id == prefix] or [
            e for e in entries if prefix and e.id.startswith(prefix)
        ]
        if not matches:
            unknown.append(wanted)
        elif len(matches) > 1:
            ambiguous.append(wanted)
        elif matches[0] not in found:
            found.append(matches[0])
    problems = []
    if unknown:
        problems.append(f"no dead-letter entry has the id {', '.join(unknown)}")
    if ambiguous:
        problems.append(f"{', '.join(ambiguous)} names several entries: give more of the id")
    if problems:
        raise DlqError("; ".join(problems) + " (see `carveout dlq list`)")
    return found


@dataclass(frozen=True)
class Redriven:
    """An entry re-driven (or, in a dry run, that would be)."""

    entry: Entry
    partition: int | None
    offset: int | None
    same_record_as: str | None = None
    """Another entry of this run for the same source record: published once, for both."""

    def to_json(self, dry_run: bool) -> dict[str, Any]:
        topic, partition, offset = self.entry.source
        return {
            "id": self.entry.id,
            "topic": topic,
            "source": {"partition": partition, "offset": offset},
            "published": None
            if dry_run or self.same_record_as
            else {"partition": self.partition, "offset": self.offset},
            "same_record_as": self.same_record_as,
            "dry_run": dry_run,
        }


def operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


async def redrive(
    bootstrap: str, entries: Sequence[Entry], *, by: str | None = None, dry_run: bool = False
) -> list[Redriven]:
    """Publish each entry's original record again to its source topic, and record it.

    Entries for the same source record (one record two services gave up on) publish it
    once. Each entry re-driven gets a ``message.redriven`` event on the dead-letter topic.
    """
    who = by or operator()
    done: list[Redriven] = []
    first_of: dict[tuple[str, int, int], Redriven] = {}
    if dry_run:
        for entry in entries:
            done.append(_once(entry, first_of) or Redriven(entry, None, None))
        return done
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=PRODUCER, **PRODUCER_OPTIONS)
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise DlqError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from None
    try:
        for entry in entries:
            result = _once(entry, first_of)
            if result is None:
                result = await _publish(producer, entry, bootstrap)
                topic, partition, offset = entry.source
                if partition is not None and offset is not None:
                    first_of[(topic, partition, offset)] = result
            marker = MessageRedriven(
                producer=PRODUCER,
                key=entry.event.data.source_topic,
                data=RedrivenData(
                    entry_id=entry.event.event_id,
                    source_topic=entry.event.data.source_topic,
                    partition=result.partition,
                    offset=result.offset,
                    by=who,
                ),
            )
            await producer.send_and_wait(
                topics.DEADLETTER,
                codec.encode_value(marker),
                key=marker.key.encode(),
                headers=codec.headers(entry.event.data.headers.get("traceparent")),
            )
            done.append(result)
    finally:
        await producer.stop()
    return done


def _once(entry: Entry, first_of: dict[tuple[str, int, int], Redriven]) -> Redriven | None:
    topic, partition, offset = entry.source
    if partition is None or offset is None:
        return None
    earlier = first_of.get((topic, partition, offset))
    if earlier is None:
        return None
    return Redriven(entry, earlier.partition, earlier.offset, same_record_as=earlier.entry.id)


async def read_original(bootstrap: str, entry: Entry, within_s: float = SOURCE_READ_S) -> bytes:
    """A truncated entry's original value, read from its source position and checked
    against its SHA-256; :class:`DlqError` when the source no longer has it as it was."""
    data = entry.event.data
    topic, partition, offset = entry.source
    where = f"{topic} {partition}@{offset}"
    if partition is None or offset is None:
        raise DlqError(f"entry {entry.id} kept only the head of its value and no source position")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=PRODUCER,
        enable_auto_commit=False,
        auto_offset_reset="none",  # an offset the broker no longer has is an error, not 0
        max_partition_fetch_bytes=max(data.size or 0, 1024 * 1024) + 64 * 1024,
        fetch_max_bytes=max(data.size or 0, 1024 * 1024) + 64 * 1024,
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise DlqError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from None
    gone = (
        f"entry {entry.id} kept only the first bytes of its {data.size}-byte value, and "
        f"{where} is no longer retained by the broker: it cannot be re-driven"
    )
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        async with asyncio.timeout(within_s):
            while True:
                try:
                    batch = await consumer.getmany(tp, timeout_ms=200)
                except OffsetOutOfRangeError:
                    raise DlqError(gone) from None
                records = batch.get(tp, [])
                if records:
                    break
    except TimeoutError:
        raise DlqError(gone) from None
    except KafkaError as exc:
        raise DlqError(f"cannot read {where}: {exc}") from None
    finally:
        await consumer.stop()
    record = records[0]
    if record.offset != offset:
        raise DlqError(gone)
    value = bytes(record.value or b"")
    digest = hashlib.sha256(value).hexdigest()
    if digest != data.sha256:
        raise DlqError(
            f"the record now at {where} is not the one entry {entry.id} set aside "
            f"(sha256 {digest[:12]}…, expected {(data.sha256 or '?')[:12]}…): not re-driven"
        )
    return value


async def _publish(producer: AIOKafkaProducer, entry: Entry, bootstrap: str) -> Redriven:
    topic, source_partition, _ = entry.source
    key = entry.key()
    value = await read_original(bootstrap, entry) if entry.truncated else entry.original()
    try:
        sent = await producer.send_and_wait(
            topic,
            value,
            key=key,
            # Keyed records go where their key does (the default partitioner, as first
            # published); a record without a key goes back to its own partition.
            partition=source_partition if key is None else None,
            headers=entry.headers(),
        )
    except KafkaError as exc:
        raise DlqError(f"could not publish entry {entry.id} to {topic}: {exc}") from None
    return Redriven(entry, sent.partition, sent.offset)


# --------------------------------------------------------------------------- commands


def _short_topic(name: str) -> str:
    return next((short for short, full in SHORT_NAMES.items() if full == name), name)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def entries_table(entries: Sequence[Entry], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "when (UTC)", "service", "source", "reason", "error", "original"):
        table.add_column(column, overflow="fold")
    table.add_column("re-driven")
    for e in entries:
        topic, partition, offset = e.source
        where = f"{_short_topic(topic)} {partition if partition is not None else '?'}"
        where += f"@{offset}" if offset is not None else ""
        last = e.redrives[-1].at.strftime("%Y-%m-%d %H:%M:%S") if e.redrives else ""
        table.add_row(
            Text(e.id[:8]),
            Text(e.at.strftime("%Y-%m-%d %H:%M:%S")),
            Text(e.service),
            Text(where),
            Text(e.event.data.reason),
            Text(_clip(e.event.data.error, 60)),
            Text(e.preview(50)),
            Text(f"{len(e.redrives)}x, last {last}" if e.redrives else "no"),
        )
    return table


TopicFilter = Annotated[
    str | None,
    typer.Option(
        "--topic", help="Only entries from this source topic (short or full name, e.g. access)."
    ),
]
ReasonFilter = Annotated[
    str | None, typer.Option("--reason", help=f"Only entries of this reason: {', '.join(REASONS)}.")
]
ServiceFilter = Annotated[
    str | None,
    typer.Option("--service", help="Only entries this service set aside (grant, enforcement...)."),
]
Bootstrap = Annotated[
    str, typer.Option(envvar="CARVEOUT_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers.")
]


def register(app: typer.Typer, console: Console, err: Console) -> None:
    """Add ``carveout dlq list`` and ``carveout dlq redrive`` to the ``carveout`` command."""
    dlq_app = typer.Typer(
        help="The dead-letter topic: messages a consumer could not process.",
        no_args_is_help=True,
    )
    app.add_typer(dlq_app, name="dlq")

    def fail(message: str) -> NoReturn:
        err.print(f"[red]error:[/] {escape(message)}", highlight=False)
        raise typer.Exit(1)

    def read(bootstrap: str) -> DeadLetters:
        try:
            return asyncio.run(load(bootstrap))
        except DlqError as exc:
            fail(str(exc))

    def filtered(entries: Sequence[Entry], **filters: Any) -> list[Entry]:
        try:
            return select(entries, **filters)
        except TailError as exc:
            fail(str(exc))

    @dlq_app.command("list")
    def dlq_list(
        topic: TopicFilter = None,
        reason: ReasonFilter = None,
        service: ServiceFilter = None,
        pending: Annotated[
            bool, typer.Option("--pending", help="Only entries never re-driven.")
        ] = False,
        limit: Annotated[
            int, typer.Option(min=1, help="Show at most this many entries: the newest.")
        ] = 100,
        as_json: Annotated[
            bool,
            typer.Option(
                "--json",
                help="Print one JSON array, oldest first: per entry its id, dead_lettered_at, "
                "service, reason, error, source {topic, partition, offset, key}, original "
                "{value, encoding, headers}, position on the dead-letter topic and redriven "
                "[{at, by, partition, offset}].",
            ),
        ] = False,
        bootstrap: Bootstrap = "127.0.0.1:9092",
    ) -> None:
        """List the dead-letter entries, oldest first, and whether each was re-driven.

        Each row: id, when, service, source topic partition@offset, reason, error,
        a preview of the original message and its re-drives.
        Reads the whole topic as it is now, then stops (no consumer group).
        """
        found = read(bootstrap)
        matching = filtered(
            found.entries, topic=topic, reason=reason, service=service, pending=pending
        )
        shown = matching[-limit:]
        if as_json:
            sys.stdout.write(json.dumps([e.to_json() for e in shown], indent=2) + "\n")
            return
        if found.unreadable:
            err.print(
                f"[yellow]{found.unreadable} record(s) on {topics.DEADLETTER} are not "
                "dead-letter events; skipped[/]",
                highlight=False,
            )
        if not matching:
            what = "matching these filters " if topic or reason or service or pending else ""
            console.print(f"no dead-letter entries {what}on {topics.DEADLETTER}", highlight=False)
            return
        title = f"{len(matching)} dead-letter entr{'y' if len(matching) == 1 else 'ies'}"
        if len(shown) < len(matching):
            title += f" (the newest {len(shown)} shown)"
        console.print(entries_table(shown, title))

    @dlq_app.command("redrive")
    def dlq_redrive(
        ids: Annotated[
            list[str] | None,
            typer.Option(
                "--id", help="An entry to re-drive: its id or a unique prefix (repeat for more)."
            ),
        ] = None,
        all_pending: Annotated[
            bool,
            typer.Option(
                "--all",
                help="Re-drive every entry never re-driven yet (narrow with --topic, --reason, "
                "--service).",
            ),
        ] = False,
        topic: TopicFilter = None,
        reason: ReasonFilter = None,
        service: ServiceFilter = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Say what would be re-driven; publish nothing.")
        ] = False,
        as_json: Annotated[
            bool,
            typer.Option(
                "--json",
                help="Print one JSON array: per entry its id, topic, source position, where "
                "the copy was published and dry_run.",
            ),
        ] = False,
        bootstrap: Bootstrap = "127.0.0.1:9092",
    ) -> None:
        """Publish dead-lettered messages again to their source topics, to be processed.

        Use it once the cause is fixed (a consumer upgraded, a store back up).
        The original bytes go back with their key and headers, plus a
        carveout-redriven-from header naming the entry.
        Each re-drive is recorded on the dead-letter topic: `dlq list` shows it.
        Every consumer of the source topic sees the record again; one that processed it
        before skips it by event_id, so re-driving twice doubles nothing.
        A message that is still poison is simply dead-lettered again, as a new entry.
        """
        if bool(ids) == all_pending:
            fail("name the entries with --id ID (repeatable), or re-drive them all with --all")
        found = read(bootstrap)
        if ids:
            if topic or reason or service:
                fail("--topic, --reason and --service narrow --all; with --id name entries only")
            try:
                chosen = find(found.entries, ids)
            except DlqError as exc:
                fail(str(exc))
        else:
            chosen = filtered(
                found.entries, topic=topic, reason=reason, service=service, pending=True
            )
        if not chosen:
            console.print(
                "nothing to re-drive: no entry matches that was not re-driven already "
                "(`carveout dlq list` shows them all)",
                highlight=False,
                soft_wrap=True,
            )
            return
        try:
            done = asyncio.run(redrive(bootstrap, chosen, dry_run=dry_run))
        except DlqError as exc:
            fail(str(exc))
        if as_json:
            sys.stdout.write(json.dumps([r.to_json(dry_run) for r in done], indent=2) + "\n")
            return
        verb = "would re-drive" if dry_run else "re-drove"
        for r in done:
            topic_name, partition, offset = r.entry.source
            line = f"{verb} {r.entry.id[:8]} ({r.entry.event.data.reason}, from {topic_name}"
            line += f" {partition}@{offset})" if offset is not None else ")"
            if r.same_record_as:
                line += f": the same record as {r.same_record_as[:8]}, published once"
            elif not dry_run:
                line += f" -> {topic_name} {r.partition}@{r.offset}"
            console.print(escape(line), highlight=False, soft_wrap=True)
        if not dry_run:
            console.print(
                f"{len(done)} entr{'y' if len(done) == 1 else 'ies'} re-driven; "
                "consumers skip events they processed before (by event_id)",
                highlight=False,
                soft_wrap=True,
            )
