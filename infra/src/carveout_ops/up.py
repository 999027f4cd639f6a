"""``carveout up``: the command (:data:`app`, that cli.py adds); keeping the broker and the
services running is :mod:`.supervisor`'s job."""

from __future__ import annotations

import sys

import typer

from .output import console

app = typer.Typer()


@app.command()
def up() -> None:
    """Start the embedded broker, create the topics and run the three services (Ctrl-C stops)."""
    from .supervisor import run_up

    # Lines appear as they happen even when the output goes to a file or a pipe.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    raise typer.Exit(run_up(console))
