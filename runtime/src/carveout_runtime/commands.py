"""The ``python -m carveout_<name>`` command line of a service (``serve``, ``settings``)."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from typing import Any, Protocol

from .logs import configure_logging
from .settings import SharedSettings

SWITCH_INTERVAL_S = 0.0005
"""How long a thread holding the GIL keeps it while another waits (CPython's default: 5 ms).

A service's event loop lets the GIL go at every poll of its sockets, and its store writes
run in worker threads that let it go at every SQLite call; each then waits out the other's
interval to take it back. With 5 ms, the few turns of the loop a revocation needs (its
fetch, its application, the answer to the decision waiting on it) each waited up to 5 ms
behind an access batch's write, and a grant event's own write, a dozen calls, took tens of
milliseconds while the loop judged, holding the grant events after it back as long.
"""


def prefer_short_waits() -> None:
    """Hand the GIL between the event loop and the store threads every ``SWITCH_INTERVAL_S``."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


class Listening(Protocol):
    """Where a server listens and how much it logs (a service's or the console's settings)."""

    host: str
    port: int
    log_level: str


def serve_app(app: Any, settings: Listening, **options: Any) -> None:
    """Serve ``app`` with uvicorn until stopped, where ``settings`` say.

    Logging stays as ``configure_logging`` made it: uvicorn gets no logging config of its
    own and writes no access log. ``options`` go to uvicorn as they are.
    """
    import uvicorn

    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        log_config=None,
        **options,
    )


def service_cli(
    name: str,
    summary: str,
    settings_factory: Callable[[], SharedSettings],
    app_factory: str,
) -> Any:
    """The ``python -m carveout_<name>`` command line of a service (``serve``, ``--help``).

    ``app_factory`` names the composition root as ``module:function``; it is imported
    only to serve, so ``--help`` and ``settings`` answer without loading the service.
    """
    import typer

    cli = typer.Typer(help=summary, no_args_is_help=True, add_completion=False)
    prefix = f"CARVEOUT_{name.upper()}_"

    @cli.command()
    def serve() -> None:
        """Serve the HTTP API and the Kafka subscribers until stopped (SIGINT or SIGTERM)."""
        settings = settings_factory()
        configure_logging(name, settings.log_level)
        prefer_short_waits()
        module, function = app_factory.split(":")
        create_app = getattr(importlib.import_module(module), function)
        serve_app(create_app(settings), settings)

    @cli.command()
    def settings() -> None:
        """Print the settings in force (from CARVEOUT_* variables), tokens hidden."""
        values = settings_factory().model_dump(mode="json")
        for key in [k for k in values if k.endswith("_token")]:
            values[key] = "***" if values[key] else None
        typer.echo(json.dumps(values, indent=2))

    serve.__doc__ = f"{serve.__doc__} Configured by {prefix}* and CARVEOUT_* variables."
    return cli
