"""``carveout dlq list|redrive``: the Typer command group (cli.py adds :data:`app`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.markup import escape

from carveout_contracts import topics

from ..output import Bootstrap, console, err, fail, json_option
from ..topic_names import UnknownTopic
from . import render
from .kafka import load, redrive
from .model import REASONS, DeadLetters, DlqError, Entry, find, select

app = typer.Typer(
    help="The dead-letter topic: messages a consumer could not process.",
    no_args_is_help=True,
)

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
PendingFilter = Annotated[bool, typer.Option("--pending", help="Only entries never re-driven.")]
EntriesJson = Annotated[
    bool,
    json_option(
        "Print one JSON array, oldest first: per entry its id, dead_lettered_at, "
        "service, reason, error, source {topic, partition, offset, key}, original "
        "{value, encoding, headers}, position on the dead-letter topic and redriven "
        "[{at, by, partition, offset}]."
    ),
]
RedrivenJson = Annotated[
    bool,
    json_option(
        "Print one JSON array: per entry its id, topic, source position, where "
        "the copy was published and dry_run."
    ),
]


def _read(bootstrap: str) -> DeadLetters:
    try:
        return asyncio.run(load(bootstrap))
    except DlqError as exc:
        fail(str(exc))


def _filtered(entries: Sequence[Entry], **filters: Any) -> list[Entry]:
    try:
        return select(entries, **filters)
    except UnknownTopic as exc:
        fail(str(exc))


@app.command("list")
def dlq_list(
    topic: TopicFilter = None,
    reason: ReasonFilter = None,
    service: ServiceFilter = None,
    pending: PendingFilter = False,
    limit: Annotated[
        int, typer.Option(min=1, help="Show at most this many entries: the newest.")
    ] = 100,
    as_json: EntriesJson = False,
    bootstrap: Bootstrap = "127.0.0.1:9092",
) -> None:
    """List the dead-letter entries, oldest first, and whether each was re-driven.

    Each row: id, when, service, source topic partition@offset, reason, error,
    a preview of the original message and its re-drives.
    Reads the whole topic as it is now, then stops (no consumer group).
    """
    found = _read(bootstrap)
    matching = _filtered(
        found.entries, topic=topic, reason=reason, service=service, pending=pending
    )
    shown = matching[-limit:]
    if as_json:
        sys.stdout.write(render.entries_json(shown))
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
    title = render.list_title(len(matching), len(shown))
    console.print(render.entries_table(shown, title))


@app.command("redrive")
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
    as_json: RedrivenJson = False,
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
    found = _read(bootstrap)
    if ids:
        if topic or reason or service:
            fail("--topic, --reason and --service narrow --all; with --id name entries only")
        try:
            chosen = find(found.entries, ids)
        except DlqError as exc:
            fail(str(exc))
    else:
        chosen = _filtered(found.entries, topic=topic, reason=reason, service=service, pending=True)
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
        sys.stdout.write(render.redriven_json(done, dry_run))
        return
    for r in done:
        console.print(escape(render.redriven_line(r, dry_run)), highlight=False, soft_wrap=True)
    if not dry_run:
        console.print(
            render.redriven_summary(len(done)),
            highlight=False,
            soft_wrap=True,
        )
