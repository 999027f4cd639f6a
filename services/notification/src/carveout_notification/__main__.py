"""``python -m carveout_notification``: run the notification service."""

from __future__ import annotations

from carveout_runtime.commands import service_cli

from .settings import NotificationSettings


def _create_app(settings: NotificationSettings) -> object:
    from .app import create_app

    return create_app(settings)


cli = service_cli(
    "notification",
    "The Carveout notification service: tells every party concerned.",
    NotificationSettings,
    _create_app,
)

if __name__ == "__main__":
    cli()
