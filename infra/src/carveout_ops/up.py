"""``carveout up``: the command (:data:`app`, that cli.py adds); keeping the broker and the
services running is :mod:`.supervisor`'s job."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .output import console

app = typer.Typer()


@app.command()
def up(
    replicas: Annotated[
        int,
        typer.Option(
            envvar="CARVEOUT_REPLICAS",
            help="Processes of each service; replica i listens on the service's port + 10·i. "
            "More than one needs each service's store on PostgreSQL.",
        ),
    ] = 1,
) -> None:
    """Start the embedded broker, create the topics and run the three services (Ctrl-C stops)."""
    from .supervisor import run_up

    # Lines appear as they happen even when the output goes to a file or a pipe.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    raise typer.Exit(run_up(console, replicas))
