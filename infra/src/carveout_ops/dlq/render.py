"""Rendering dead-letter entries and re-drives: rich tables, lines and ``--json``."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from carveout_contracts import codec

from ..topic_names import short_name
from .model import Entry, Redriven


def _clip(text: str, width: int) -> str:
    return codec.clip(" ".join(text.split()), width)


def entries_table(entries: Sequence[Entry], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "when (UTC)", "service", "source", "reason", "error", "original"):
        table.add_column(column, overflow="fold")
    table.add_column("re-driven")
    for e in entries:
        topic, partition, offset = e.source
        where = f"{short_name(topic)} {partition if partition is not None else '?'}"
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


def entries_json(entries: Sequence[Entry]) -> str:
    """``dlq list --json``: one JSON array of the entries, as given (oldest first)."""
    return json.dumps([e.to_json() for e in entries], indent=2) + "\n"


def list_title(matching: int, shown: int) -> str:
    """The title of ``dlq list``'s table: how many entries match, and how many are shown."""
    title = f"{matching} dead-letter entr{'y' if matching == 1 else 'ies'}"
    if shown < matching:
        title += f" (the newest {shown} shown)"
    return title


def redriven_json(done: Sequence[Redriven], dry_run: bool) -> str:
    """``dlq redrive --json``: one JSON array of the entries re-driven."""
    return json.dumps([r.to_json(dry_run) for r in done], indent=2) + "\n"


def redriven_line(r: Redriven, dry_run: bool) -> str:
    """One plain line (no markup) for an entry re-driven, or that would be."""
    verb = "would re-drive" if dry_run else "re-drove"
    topic_name, partition, offset = r.entry.source
    line = f"{verb} {r.entry.id[:8]} ({r.entry.event.data.reason}, from {topic_name}"
    line += f" {partition}@{offset})" if offset is not None else ")"
    if r.same_record_as:
        line += f": the same record as {r.same_record_as[:8]}, published once"
    elif not dry_run:
        line += f" -> {topic_name} {r.partition}@{r.offset}"
    return line


def redriven_summary(count: int) -> str:
    return (
        f"{count} entr{'y' if count == 1 else 'ies'} re-driven; "
        "consumers skip events they processed before (by event_id)"
    )
