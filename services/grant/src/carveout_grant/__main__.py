"""``python -m carveout_grant``: run the grant service."""

from __future__ import annotations

import typer
import uvicorn
from carveout_contracts.runtime import configure_logging

from .settings import GrantSettings

cli = typer.Typer(
    help="The Carveout grant service.",
    no_args_is_help=True,
    add_completion=False,
)


@cli.command()
def serve() -> None:
    """Serve the HTTP API and relay grant events (configured by CARVEOUT_GRANT_* variables)."""
    from .app import create_app

    settings = GrantSettings()
    configure_logging("grant", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        log_config=None,
    )


@cli.command()
def version() -> None:
    """Print the service version."""
    typer.echo("carveout-grant 1")


if __name__ == "__main__":
    cli()
