"""The ``python -m carveout_<name>`` command line of a service (``serve``, ``settings``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .logs import configure_logging
from .settings import SharedSettings

if TYPE_CHECKING:
    pass


def service_cli(
    name: str,
    summary: str,
    settings_factory: Callable[[], SharedSettings],
    app_factory: Callable[[Any], Any],
) -> Any:
    """The ``python -m carveout_<name>`` command line of a service (``serve``, ``--help``)."""
    import typer

    cli = typer.Typer(help=summary, no_args_is_help=True, add_completion=False)
    prefix = f"CARVEOUT_{name.upper()}_"

    @cli.command()
    def serve() -> None:
        """Serve the HTTP API and the Kafka subscribers until stopped (SIGINT or SIGTERM)."""
        import uvicorn

        settings = settings_factory()
        configure_logging(name, settings.log_level)
        uvicorn.run(
            app_factory(settings),
            host=getattr(settings, "host", "127.0.0.1"),
            port=int(getattr(settings, "port", 0)),
            log_level=settings.log_level,
            access_log=False,
            log_config=None,
        )

    @cli.command()
    def settings() -> None:
        """Print the settings in force (from CARVEOUT_* variables), tokens hidden."""
        values = settings_factory().model_dump(mode="json")
        for key in [k for k in values if k.endswith("_token")]:
            values[key] = "***" if values[key] else None
        typer.echo(json.dumps(values, indent=2))

    serve.__doc__ = f"{serve.__doc__} Configured by {prefix}* and CARVEOUT_* variables."
    return cli
