"""``python -m carveout_grant``: run the grant service."""

from __future__ import annotations

from carveout_runtime.commands import service_cli

from .settings import GrantSettings


def _create_app(settings: GrantSettings) -> object:
    from .app import create_app

    return create_app(settings)


cli = service_cli(
    "grant",
    "The Carveout grant service: system of record for regulator actions.",
    GrantSettings,
    _create_app,
)

if __name__ == "__main__":
    cli()
