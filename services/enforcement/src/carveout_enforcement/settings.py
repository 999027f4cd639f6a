"""Configuration of the enforcement service: ``CARVEOUT_ENFORCEMENT_*`` plus ``CARVEOUT_*``."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from carveout_contracts.runtime import SharedSettings


class EnforcementSettings(SharedSettings):
    model_config = SettingsConfigDict(env_prefix="CARVEOUT_ENFORCEMENT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8082
    database_url: str = "sqlite:///var/enforcement.db"
    group_id: str = "carveout-enforcement"
    store_retry_attempts: int = 5
