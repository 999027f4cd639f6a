"""The ``carveout`` command: run the system and act on it."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from carveout_contracts import Role

from .client import ApiFailure, call

app = typer.Typer(
    help="Carveout: conditional access to restricted AI models.",
    no_args_is_help=True,
    add_completion=False,
)
grant_app = typer.Typer(help="Issue and inspect grants (regulator).", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
app.add_typer(grant_app, name="grant")
app.add_typer(topics_app, name="topics")

console = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _fail(message: str) -> None:
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


def _emit(payload: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        console.print_json(json.dumps(payload, default=str))


@app.command()
def up() -> None:
    """Start the embedded broker, create the topics and run the three services (Ctrl-C stops)."""
    from .supervisor import run_up

    # Lines appear as they happen even when the output goes to a file or a pipe.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    raise typer.Exit(run_up(console))


@topics_app.command("create")
def topics_create(
    bootstrap: Annotated[str, typer.Option(envvar="CARVEOUT_KAFKA_BOOTSTRAP")] = "127.0.0.1:9092",
) -> None:
    """Create the Carveout topics that are missing (partitions from CARVEOUT_PARTITIONS*)."""
    from .broker import ensure_topics, partitions_from_env, wait_for_broker

    async def go() -> list[str]:
        await wait_for_broker(bootstrap)
        return await ensure_topics(bootstrap, partitions_from_env())

    created = asyncio.run(go())
    console.print(f"created: {', '.join(created) or 'nothing (all topics exist)'}")


@grant_app.command("issue")
def grant_issue(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON file with the grant (the body of POST /v1/grants); - reads stdin."
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Issue a grant from a JSON file."""
    text = sys.stdin.read() if str(file) == "-" else file.read_text()
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{file} is not JSON: {exc}")
    try:
        grant = call("grant", "POST", "/v1/grants", role=Role.REGULATOR, body=body)
    except ApiFailure as exc:
        _fail(str(exc))
    if as_json:
        _emit(grant, True)
    else:
        console.print(
            f"issued [bold]{grant['grant_id']}[/] (version {grant['version']}, {grant['status']}) "
            f"to {grant['grantee']['id']} for {grant['model_id']}"
        )


@grant_app.command("show")
def grant_show(grant_id: str, as_json: JsonFlag = False) -> None:
    """Show one grant as the grant service holds it."""
    try:
        _emit(call("grant", "GET", f"/v1/grants/{grant_id}", role=Role.AUDITOR), as_json)
    except ApiFailure as exc:
        _fail(str(exc))


@grant_app.command("list")
def grant_list(
    grantee_id: Annotated[str | None, typer.Option(help="Only this grantee's grants.")] = None,
    status: Annotated[
        str | None, typer.Option(help="active, suspended, revoked or expired.")
    ] = None,
    limit: int = 50,
    as_json: JsonFlag = False,
) -> None:
    """List grants."""
    params = {k: v for k, v in {"grantee_id": grantee_id, "status": status}.items() if v}
    try:
        page = call(
            "grant", "GET", "/v1/grants", role=Role.AUDITOR, params={**params, "limit": limit}
        )
    except ApiFailure as exc:
        _fail(str(exc))
    if as_json:
        _emit(page, True)
        return
    table = Table(title=f"{page['total']} grant(s)")
    for column in ("grant", "carveout", "grantee", "model", "version", "status", "valid until"):
        table.add_column(column, overflow="fold")
    for g in page["items"]:
        table.add_row(
            g["grant_id"],
            g["carveout_id"],
            g["grantee"]["id"],
            g["model_id"],
            str(g["version"]),
            g["status"],
            g["valid_until"],
        )
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
