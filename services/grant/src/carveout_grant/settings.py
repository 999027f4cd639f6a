"""Configuration of the grant service: ``CARVEOUT_GRANT_*`` plus the shared ``CARVEOUT_*``."""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from carveout_contracts.addresses import IPNetwork, parse_networks
from carveout_contracts.runtime import SharedSettings


class GrantSettings(SharedSettings):
    model_config = SettingsConfigDict(env_prefix="CARVEOUT_GRANT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8081
    database_url: str = "sqlite:///var/grant.db"
    group_id: str = "carveout-grant"
    relay_poll_seconds: float = 0.5
    relay_wait_seconds: float = Field(
        2.0, description="How long a regulator call waits for its event to reach the broker."
    )
    webhook_allow_networks: str = Field(
        "",
        validation_alias=AliasChoices(
            "webhook_allow_networks", "CARVEOUT_NOTIFICATION_WEBHOOK_ALLOW_NETWORKS"
        ),
        description="The networks a grant contact's webhook may be in although private or "
        "reserved: the notification service's setting, read so both judge alike.",
    )

    @field_validator("webhook_allow_networks")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def allow_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.webhook_allow_networks)
