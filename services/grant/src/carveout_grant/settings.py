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
    relay_lease_seconds: float = Field(
        3.0,
        gt=0,
        description="How long the relay lease lasts unless renewed: of replicas sharing a "
        "database, the holder relays, and another takes over this long after it dies.",
    )
    relay_renew_seconds: float = Field(
        1.0, gt=0, description="How often the relay renews its lease (well under its length)."
    )
    relay_watch_seconds: float = Field(
        0.05,
        gt=0,
        description="How often a waiting regulator call reads whether its event is "
        "published, when another replica relays.",
    )
