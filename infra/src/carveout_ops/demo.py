"""``carveout demo``: the command (:data:`app`, that cli.py adds); the scenario it narrates
is :mod:`.demo_scenario`."""

from __future__ import annotations

from typing import Annotated

import typer

from .client import ApiFailure
from .output import console, fail

app = typer.Typer()


@app.command()
def demo(
    events: Annotated[int, typer.Option(help="Accesses of ordinary traffic to send.")] = 50_000,
) -> None:
    """The demo scenario, narrated with timings (starts the system if none runs)."""
    from .demo_scenario import run_demo

    try:
        complete = run_demo(console, events)
    except ApiFailure as exc:
        fail(str(exc))
    if not complete:
        fail("some steps were not seen in time (marked ✗ above); is the system overloaded?")
