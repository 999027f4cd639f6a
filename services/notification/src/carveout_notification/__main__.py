"""``python -m carveout_notification``: run the notification service."""

from __future__ import annotations

from carveout_runtime.commands import service_cli

from .settings import NotificationSettings

cli = service_cli(
    "notification",
    "The Carveout notification service: tells every party concerned.",
    NotificationSettings,
    "carveout_notification.app:create_app",
)

if __name__ == "__main__":
    cli()
