"""``python -m carveout_grant``: run the grant service."""

from __future__ import annotations

from carveout_runtime.commands import service_cli

from .settings import GrantSettings

cli = service_cli(
    "grant",
    "The Carveout grant service: system of record for regulator actions.",
    GrantSettings,
    "carveout_grant.app:create_app",
)

if __name__ == "__main__":
    cli()
