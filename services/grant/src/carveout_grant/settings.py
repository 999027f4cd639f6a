"""Configuration of the grant service: ``CARVEOUT_GRANT_*`` plus the shared ``CARVEOUT_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from carveout_runtime.settings import SharedSettings, WebhookRules


class GrantSettings(SharedSettings, WebhookRules):
    model_config = SettingsConfigDict(env_prefix="CARVEOUT_GRANT_", extra="ignore")

    port: int = 8081
    database_url: str = "sqlite:///var/grant.db"
    group_id: str = "carveout-grant"
    relay_poll_seconds: float = 0.5
    relay_wait_seconds: float = Field(
        2.0, description="How long a regulator call waits for its event to reach the broker."
    )
