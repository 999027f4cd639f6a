"""The dead-letter model: entries, what became of them, and choosing among them.

Pure functions over decoded ``carveout.deadletter`` events; reading and writing the topic
is :mod:`.kafka`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_args

from carveout_contracts import PoisonMessage, codec, decode, topics
from carveout_contracts.events import DeadLetteredData, MessageDeadLettered, MessageRedriven

from ..topic_names import resolve_topic

REDRIVE_HEADER = "carveout-redriven-from"
"""Header added to a re-driven record: the id of the entry it came from."""


REASONS: tuple[str, ...] = get_args(DeadLetteredData.model_fields["reason"].annotation)
"""Every reason a dead letter may give, as the contract lists them."""


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
    """The re-drives recorded on the dead-letter topic for this entry, oldest first."""

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
        return codec.clip(" ".join(text.split()), width)

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


def same_record(entry: Entry, first_of: dict[tuple[str, int, int], Redriven]) -> Redriven | None:
    """``entry`` as re-driven already in this run, when ``first_of`` (the first entry
    re-driven for each source position) holds another entry for the same source record."""
    topic, partition, offset = entry.source
    if partition is None or offset is None:
        return None
    earlier = first_of.get((topic, partition, offset))
    if earlier is None:
        return None
    return Redriven(entry, earlier.partition, earlier.offset, same_record_as=earlier.entry.id)
