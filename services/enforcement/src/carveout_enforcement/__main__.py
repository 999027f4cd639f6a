"""``python -m carveout_enforcement``: run the enforcement service."""

from __future__ import annotations

from carveout_runtime.commands import service_cli

from .settings import EnforcementSettings

cli = service_cli(
    "enforcement",
    "The Carveout enforcement service: judges every access against the grants in force.",
    EnforcementSettings,
    "carveout_enforcement.app:create_app",
)

if __name__ == "__main__":
    cli()
