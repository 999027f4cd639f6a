"""The ``python -m carveout_<name>`` command line of a service (``serve``, ``settings``)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

from .logs import configure_logging
from .settings import SharedSettings


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
        import uvicorn

        settings = settings_factory()
        configure_logging(name, settings.log_level)
        module, function = app_factory.split(":")
        create_app = getattr(importlib.import_module(module), function)
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
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
