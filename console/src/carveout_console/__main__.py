"""``python -m carveout_console``: serve the regulator console."""

from __future__ import annotations

import json

import typer

from .settings import ConsoleSettings

cli = typer.Typer(
    help="The Carveout regulator console: web pages over the services' APIs.",
    no_args_is_help=True,
    add_completion=False,
)


@cli.command()
def serve() -> None:
    """Serve the console until stopped. Configured by CARVEOUT_CONSOLE_* variables."""
    from carveout_runtime.commands import serve_app
    from carveout_runtime.logs import configure_logging

    from .app import create_app

    settings = ConsoleSettings()
    configure_logging("console", settings.log_level)
    serve_app(
        create_app(settings),
        settings,
        # Live pages hold their streams open: they are cut after this when stopping.
        timeout_graceful_shutdown=2,
    )


@cli.command()
def settings() -> None:
    """Print the settings in force."""
    typer.echo(json.dumps(ConsoleSettings().model_dump(mode="json"), indent=2))


if __name__ == "__main__":
    cli()
