"""``carveout tail TOPIC``: the command (:data:`app`, that cli.py adds) and :func:`tail`,
which reads the topic through the shared log reader and prints each record."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from contextlib import aclosing
from typing import Annotated

import typer
from aiokafka.errors import KafkaError

from carveout_runtime import logread

from ..output import Bootstrap, console, err, fail, json_option
from ..topic_names import UnknownTopic, resolve_topic
from .render import json_line, pretty_line

app = typer.Typer()

JsonLines = Annotated[
    bool,
    json_option(
        "One JSON object a line (JSON lines): each event as published; a value "
        'that is not a JSON object as {"undecodable": why, "topic", "partition", '
        '"offset", "key", "value"}.'
    ),
]

# A batch is printed when it is read: without following, reading waits for whole batches.
LINES_PER_BATCH = 500


class TailError(RuntimeError):
    """The topic cannot be tailed (no such topic, no broker): the message says why."""


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
    """Print ``topic``'s records through ``emit``, one line each; returns how many.

    From the end of every partition, or from the beginning; with ``follow`` until the
    caller stops it, else up to the ends there were when it started. At most ``limit``
    records.
    """
    try:
        ends = await logread.log_ends(bootstrap, [topic])
    except KafkaError as exc:
        raise TailError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from None
    if not ends:
        raise TailError(f"topic {topic} does not exist (run `carveout topics create`)")
    if follow:
        batches = logread.follow(bootstrap, [topic], since=None if from_beginning else ends)
    elif from_beginning:
        batches = logread.read_topics(bootstrap, [topic], batch_records=LINES_PER_BATCH)
    else:  # from the end up to the end it had: nothing to read
        return 0
    shown = 0
    async with aclosing(batches):  # stopping at the limit stops the consumer at once
        async for batch in batches:
            for record in batch:
                emit(json_line(record) if as_json else pretty_line(record))
                shown += 1
                if limit is not None and shown >= limit:
                    return shown
    return shown


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
    as_json: JsonLines = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="Keep waiting for new events (Ctrl-C stops), or stop at the end of the "
            "topic as it was when the command started.",
        ),
    ] = True,
    bootstrap: Bootstrap = "127.0.0.1:9092",
) -> None:
    """Print a topic's events as they arrive, one line each: when, type, key, what.

    New events only, unless --from-beginning.
    Read without a consumer group: tailing never moves the services' offsets.
    """
    try:
        full = resolve_topic(topic)
    except UnknownTopic as exc:
        fail(str(exc))

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
        fail(str(exc))
    except KeyboardInterrupt:
        return
    if not as_json and not follow and shown == 0:
        if from_beginning:
            err.print(f"{full} is empty", highlight=False)
        else:
            err.print(f"no new events on {full} (--from-beginning shows older ones)")
