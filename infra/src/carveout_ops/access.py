"""``carveout access publish``: acting as a model gateway, the command group (:data:`app`,
that cli.py adds); the traffic it sends is made by :mod:`.load`."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer

from .output import Bootstrap, JsonFlag, console, err, fail, print_json

app = typer.Typer(help="Act as a model gateway.", no_args_is_help=True)


@app.command("publish")
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
        fail(f"--occurred-at {occurred_at!r} is not an ISO 8601 time")
    if moment is not None and moment.tzinfo is None:
        fail("--occurred-at needs a time zone, e.g. 2026-09-10T11:04:59Z")
    if rate is not None and duration is not None:
        count = max(1, int(rate * duration))
    if count == 1:
        event = template.event(moment)
        asyncio.run(publish(bootstrap, iter([event])))
        if as_json:
            print_json(event)
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
        print_json(summary)
    else:
        console.print(f"published {sent} access events in {elapsed:.2f}s ({sent / elapsed:,.0f}/s)")
