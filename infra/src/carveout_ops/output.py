"""What the commands print through: the two consoles, errors, ``--json`` and the options
several commands share, so that every command reports the same way."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
"""Standard output: what a command answers."""

err = Console(stderr=True)
"""Standard error: errors, warnings and progress, which a script reading stdout never sees."""

Bootstrap = Annotated[
    str, typer.Option(envvar="CARVEOUT_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers.")
]


def json_option(help: str) -> Any:
    """The ``--json`` flag, with the command's own description of what it prints."""
    return typer.Option("--json", help=help)


JsonFlag = Annotated[bool, json_option("Print JSON for scripts.")]
"""``--json`` for the commands whose JSON is the service's answer as it stands."""


def fail(message: str) -> NoReturn:
    """Print ``message`` as an error and exit with status 1.

    The message is shown as plain text: error texts quote names and values that rich
    would otherwise read as markup.
    """
    err.print(f"[red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(1)


def print_json(payload: Any) -> None:
    """``payload`` as indented JSON on standard output, for scripts (times as ISO text)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


ReadingStep = Callable[[str, int, int], None]
"""Told how far a long read has come: what it reads, how many read, of how many."""


@contextmanager
def reading_progress(
    shown: Console, *, transient: bool, disable: bool = False
) -> Iterator[ReadingStep]:
    """A progress bar for each thing a command reads (a topic, a log), shown on ``shown``;
    ``transient``: gone once done."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=shown,
        transient=transient,
        disable=disable,
    ) as bar:
        tasks: dict[str, Any] = {}

        def step(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(f"reading {what}", total=total)
            bar.update(tasks[what], completed=done, total=total)

        yield step
