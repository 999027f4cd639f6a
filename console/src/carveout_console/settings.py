"""Configuration of the console: ``CARVEOUT_CONSOLE_*``, and the shared broker and keys."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARVEOUT_CONSOLE_", extra="ignore", populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: int = 8080
    grant_url: str = Field("http://127.0.0.1:8081", description="The grant service's API.")
    enforcement_url: str = Field(
        "http://127.0.0.1:8082", description="The enforcement service's API."
    )
    notification_url: str = Field(
        "http://127.0.0.1:8083", description="The notification service's API."
    )
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        validation_alias="CARVEOUT_KAFKA_BOOTSTRAP",
        description="The broker: dead letters have no service API, they are read and "
        "re-driven on the dead-letter topic, as `carveout dlq` does.",
    )
    trusted_keys: Path | None = Field(
        None,
        validation_alias="CARVEOUT_TRUSTED_KEYS",
        description="The trusted public keys: a decision's checkpoint must be signed by one.",
    )
    log_level: str = Field("warning", validation_alias="CARVEOUT_LOG_LEVEL")
    session_hours: float = Field(8.0, gt=0, description="How long a sign-in lasts.")
    sessions_max: int = Field(10_000, ge=1, description="Sessions kept at once (oldest go).")
    live_poll_seconds: float = Field(
        0.5, gt=0, le=10, description="How often live pages ask the services for news."
    )
    action_wait_seconds: float = Field(
        10.0,
        gt=0,
        le=30,
        description="How long an action waits for every enforcer to apply it before its "
        "page shows propagation still under way.",
    )
    request_timeout_seconds: float = Field(15.0, gt=0)
