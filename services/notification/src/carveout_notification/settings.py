"""Configuration of the notification service: ``CARVEOUT_NOTIFICATION_*`` plus ``CARVEOUT_*``."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from carveout_contracts.runtime import SharedSettings


class NotificationSettings(SharedSettings):
    model_config = SettingsConfigDict(env_prefix="CARVEOUT_NOTIFICATION_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8083
    database_url: str = "sqlite:///var/notification.db"
    group_id: str = "carveout-notification"
    store_retry_attempts: int = 5
