"""``carveout replay SERVICE`` and ``carveout digest SERVICE``: rebuild a store, prove it.

The two commands (:data:`app`, that cli.py adds) belong together: a replay's digest is
compared with the live store's.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from carveout_runtime.replay import NotAFreshStore

from .output import console, err, fail, json_option, reading_progress
from .system import database_url, kafka_bootstrap, var_dir

app = typer.Typer()


class Service(StrEnum):
    grant = "grant"
    enforcement = "enforcement"
    notification = "notification"


ServiceArg = Annotated[Service, typer.Argument(help="grant, enforcement or notification.")]
JsonFlag = Annotated[bool, json_option("Print one JSON object for scripts.")]


def _module(service: Service) -> Any:
    return importlib.import_module(f"carveout_{service.value}.replay")


def _default_target(service: Service) -> str:
    folder = (var_dir() / "replay").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"sqlite:///{folder / f'{service.value}-{stamp}.db'}"


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-06-28T14:00:00Z)", param_hint="--since"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print_digest(found: dict[str, Any], title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("digest")
    table.add_column("not covered", style="dim")
    for name, entry in found["tables"].items():
        table.add_row(
            name, f"{entry['rows']:,}", entry["digest"][:16], entry.get("not_covered", "")
        )
    console.print(table)
    console.print(f"digest [bold]{found['digest']}[/]", highlight=False)


def _missing_sqlite(url: str) -> bool:
    return url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists()


@app.command()
def replay(
    service: ServiceArg,
    since: Annotated[
        str | None,
        typer.Option(
            help="Replay only records the log received from this time on (ISO 8601), "
            "into a restored copy; grant events are always folded in whole."
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Where to rebuild (SQLAlchemy URL; default: a new SQLite file "
            "under var/replay/). Must be empty unless --since is given.",
        ),
    ] = None,
    source_database_url: Annotated[
        str | None,
        typer.Option(
            "--source-database-url",
            help="notification only: the live store whose subscriptions (configuration, "
            "not events) are carried over. Default: the live store.",
        ),
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (CARVEOUT_KAFKA_BOOTSTRAP).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Rebuild SERVICE's store from the topics into a fresh database and print its digest.

    Side-effect free: nothing is published, no webhook or email is sent. Compare the
    digest with `carveout digest SERVICE`.
    """
    moment = _parse_since(since)
    target = database_url or _default_target(service)
    options: dict[str, Any] = {}
    if service is Service.notification:
        source = source_database_url or database_url_of(service)
        if _missing_sqlite(source):
            fail(
                f"no store at {source} to carry subscriptions over from: pass "
                "--source-database-url (the live notification store)"
            )
        options["source_database_url"] = source
    elif source_database_url is not None:
        raise typer.BadParameter(
            "only the notification service carries configuration over",
            param_hint="--source-database-url",
        )
    shown = err if as_json else console
    with reading_progress(shown, transient=as_json) as progress:
        try:
            report = asyncio.run(
                _module(service).replay(
                    bootstrap=bootstrap or kafka_bootstrap(),
                    database_url=target,
                    since=moment,
                    progress=progress,
                    **options,
                )
            )
        except NotAFreshStore as exc:
            fail(str(exc))
        except (KafkaError, OSError, SQLAlchemyError) as exc:
            fail(f"replay of {service.value} failed: {type(exc).__name__}: {exc}")
    if as_json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
        return
    summary = report.as_json()
    console.print(
        f"Rebuilt the {service.value} store at {target}: {summary['events']:,} records in "
        f"{summary['seconds']}s ({summary['events_per_s'] or 0:,}/s), "
        f"{report.poison} poison, {report.skipped} skipped. Nothing was published.",
        highlight=False,
    )
    _print_digest(report.digest, f"{service.value} (rebuilt)")


@app.command()
def digest(
    service: ServiceArg,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="The store to digest (default: the live store, from "
            "CARVEOUT_<SERVICE>_DATABASE_URL or var/<service>.db).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the digest of SERVICE's store: everything it derived from the log."""
    url = database_url or database_url_of(service)
    if _missing_sqlite(url):
        fail(f"no store at {url}; is this the right var dir?")
    try:
        found = _module(service).digest(url)
    except SQLAlchemyError as exc:
        fail(f"cannot read the {service.value} store at {url}: {exc}")
    if as_json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    _print_digest(found, f"{service.value} ({url})")


def database_url_of(service: Service) -> str:
    return database_url(service.value)
