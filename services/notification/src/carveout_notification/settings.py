"""Configuration of the notification service: ``CARVEOUT_NOTIFICATION_*`` plus ``CARVEOUT_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from carveout_contracts.runtime import SharedSettings


class NotificationSettings(SharedSettings):
    model_config = SettingsConfigDict(env_prefix="CARVEOUT_NOTIFICATION_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8083
    database_url: str = "sqlite:///var/notification.db"
    group_id: str = "carveout-notification"
    store_retry_attempts: int = 5
    smtp_host: str = Field("127.0.0.1", validation_alias="CARVEOUT_SMTP_HOST")
    smtp_port: int = Field(25, validation_alias="CARVEOUT_SMTP_PORT")
    smtp_from: str = Field("carveout@localhost", validation_alias="CARVEOUT_SMTP_FROM")
    smtp_timeout: float = 10.0
    webhook_timeout_seconds: float = 5.0
    delivery_max_attempts: int = Field(6, description="Attempts before notification.failed.")
    retry_base_seconds: float = Field(1.0, description="First retry delay; doubles each time.")
    retry_cap_seconds: float = Field(300.0, description="Longest delay between two attempts.")
    delivery_poll_seconds: float = 0.5
