"""The ``carveout`` command: run the system and act on it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from carveout_runtime.auth import Role

from . import dlq, tail
from .client import ApiFailure, call
from .replay import register as register_replay

app = typer.Typer(
    help="Carveout: conditional access to restricted AI models.",
    no_args_is_help=True,
    add_completion=False,
)
grant_app = typer.Typer(help="Issue and inspect grants (regulator).", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
access_app = typer.Typer(help="Act as a model gateway.", no_args_is_help=True)

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


@app.command()
def demo(
    events: Annotated[int, typer.Option(help="Accesses of ordinary traffic to send.")] = 50_000,
) -> None:
    """The demo scenario, narrated with timings (starts the system if none runs)."""
    from .demo import run_demo

    try:
        complete = run_demo(console, events)
    except ApiFailure as exc:
        _fail(str(exc))
    if not complete:
        _fail("some steps were not seen in time (marked ✗ above); is the system overloaded?")


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


Reason = Annotated[str, typer.Option("--reason", help="Why (recorded with the event).")]


def _action(path: str, body: dict[str, Any], as_json: bool) -> None:
    try:
        answer = call("grant", "POST", path, role=Role.REGULATOR, body=body)
    except ApiFailure as exc:
        _fail(str(exc))
    if as_json:
        _emit(answer, True)
        return
    for grant in answer.get("grants", [answer]):
        console.print(
            f"{grant['grant_id']}: version {grant['version']}, {grant['status']} "
            f"(event {grant['event_id']}, effective {grant['effective_at']})"
        )
    console.print(f"consistency token: {answer['consistency_token']}", highlight=False)


@grant_app.command("suspend")
def grant_suspend(grant_id: str, reason: Reason, as_json: JsonFlag = False) -> None:
    """Suspend an active grant until reinstated."""
    _action(f"/v1/grants/{grant_id}/suspend", {"reason": reason}, as_json)


@grant_app.command("reinstate")
def grant_reinstate(grant_id: str, reason: Reason, as_json: JsonFlag = False) -> None:
    """Reinstate a suspended grant."""
    _action(f"/v1/grants/{grant_id}/reinstate", {"reason": reason}, as_json)


@grant_app.command("revoke")
def grant_revoke(
    grant_id: Annotated[str, typer.Argument(help="The grant, or the carveout with --carveout.")],
    reason: Reason,
    carveout: Annotated[
        bool, typer.Option("--carveout", help="Revoke the whole carveout ID names.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a grant (or, with --carveout, every grant of a carveout) for good."""
    path = f"/v1/carveouts/{grant_id}/revoke" if carveout else f"/v1/grants/{grant_id}/revoke"
    _action(path, {"reason": reason}, as_json)


@grant_app.command("amend")
def grant_amend(
    grant_id: str,
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON with the new valid_from, valid_until, conditions, "
            "breach_policy (a grant file works); - is stdin."
        ),
    ],
    reason: Reason,
    as_json: JsonFlag = False,
) -> None:
    """Replace a grant's validity, conditions and breach policy."""
    text = sys.stdin.read() if str(file) == "-" else file.read_text()
    try:
        terms = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{file} is not JSON: {exc}")
    keep = ("valid_from", "valid_until", "conditions", "breach_policy")
    body = {k: v for k, v in terms.items() if k in keep}
    _action(f"/v1/grants/{grant_id}/amend", {**body, "reason": reason}, as_json)


Bootstrap = Annotated[
    str,
    typer.Option(envvar="CARVEOUT_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers."),
]


@access_app.command("publish")
def access_publish(
    grantee_id: Annotated[str, typer.Option(help="The grantee (firm) making the access.")] = (
        "org-netsec"
    ),
    model_id: Annotated[str, typer.Option(help="The restricted model used.")] = "mythos-preview",
    user_country: Annotated[str, typer.Option(help="ISO 3166 alpha-2 country of the user.")] = (
        "US"
    ),
    region: Annotated[str, typer.Option(help="Deployment region serving it.")] = "us-east",
    purpose: Annotated[str, typer.Option(help="Declared purpose.")] = "vulnerability-scanning",
    safeguard: Annotated[
        list[str] | None, typer.Option(help="An attested safeguard (repeat for more).")
    ] = None,
    units: Annotated[int, typer.Option(help="Usage units (e.g. tokens).")] = 100,
    user_id: Annotated[str, typer.Option(help="The user.")] = "user-1",
    gateway_id: Annotated[str, typer.Option(help="This gateway's id.")] = "gw-cli",
    grant_id: Annotated[str | None, typer.Option(help="The grant the gateway claims.")] = None,
    occurred_at: Annotated[
        str | None, typer.Option(help="When it happened (ISO 8601, default now).")
    ] = None,
    count: Annotated[int, typer.Option(help="How many events (generated traffic if > 1).")] = 1,
    rate: Annotated[float | None, typer.Option(help="Events per second (load mode).")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of load (with --rate).")] = None,
    bootstrap: Bootstrap = "127.0.0.1:9092",
    as_json: JsonFlag = False,
) -> None:
    """Publish access events to carveout.access, as a gateway with a Kafka client does.

    One event by default; --count N generates ordinary traffic spread over the past six
    weeks (or from --occurred-at on), --rate R --duration S paces live traffic.
    """
    from datetime import UTC, datetime, timedelta

    from rich.progress import Progress

    from .load import AccessTemplate, publish, scanning_traffic

    template = AccessTemplate(
        grantee_id=grantee_id,
        model_id=model_id,
        user_country=user_country,
        deployment_region=region,
        purpose=purpose,
        safeguards=list(safeguard) if safeguard is not None else ["access_logging", "mfa"],
        units=units,
        user_id=user_id,
        gateway_id=gateway_id,
        grant_id=grant_id,
    )
    try:
        moment = datetime.fromisoformat(occurred_at) if occurred_at else None
    except ValueError:
        _fail(f"--occurred-at {occurred_at!r} is not an ISO 8601 time")
    if moment is not None and moment.tzinfo is None:
        _fail("--occurred-at needs a time zone, e.g. 2026-09-10T11:04:59Z")
    if rate is not None and duration is not None:
        count = max(1, int(rate * duration))
    if count == 1:
        event = template.event(moment)
        asyncio.run(publish(bootstrap, iter([event])))
        if as_json:
            _emit(event, True)
        else:
            console.print(f"published access {event['event_id']} to carveout.access")
        return
    # --count N: traffic of the past six weeks, spread evenly (as a gateway uploading its
    # records would send it); --rate: live traffic, happening now.
    span = None
    start = moment
    if rate is None and moment is None:
        start, span = datetime.now(UTC) - timedelta(days=42), timedelta(days=41)
    started = time.perf_counter()
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("publishing access events", total=count)
        sent = asyncio.run(
            publish(
                bootstrap,
                scanning_traffic(template, count, start=start, span=span),
                rate=rate,
                on_sent=lambda n: progress.update(task, completed=n),
            )
        )
    elapsed = time.perf_counter() - started
    summary = {"published": sent, "seconds": round(elapsed, 3), "per_second": round(sent / elapsed)}
    if as_json:
        _emit(summary, True)
    else:
        console.print(f"published {sent} access events in {elapsed:.2f}s ({sent / elapsed:,.0f}/s)")


register_replay(app, console, err)
app.add_typer(tail.app)
app.add_typer(access_app, name="access")
app.add_typer(grant_app, name="grant")
app.add_typer(topics_app, name="topics")
app.add_typer(dlq.app, name="dlq")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
