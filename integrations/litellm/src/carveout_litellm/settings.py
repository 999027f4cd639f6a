"""How the LiteLLM callback reaches Carveout: ``CARVEOUT_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from carveout_contracts import limits


class CallbackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARVEOUT_", extra="ignore")

    enforcement_url: str = Field(
        "http://127.0.0.1:8082",
        description="The enforcement service: its decision API and POST /v1/access.",
    )
    gateway_token: str | None = Field(
        None, description="A gateway token; without one, every call is refused (503)."
    )
    kafka_bootstrap: str | None = Field(
        None,
        description="Kafka to publish access.recorded on; without it (or while it is down) "
        "accesses go by POST /v1/access.",
    )
    gateway_id: str = Field(
        "litellm",
        min_length=1,
        max_length=limits.MAX_ID,
        description="This proxy's gateway id (a named gateway token's name, when it has one).",
    )
    gateway_region: str | None = Field(
        None,
        max_length=limits.MAX_ID,
        description="Where this proxy's models run, unless a request or key says otherwise.",
    )
    litellm_buffer: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Accesses waiting to be recorded; while it is full, calls are refused (503).",
    )
    decision_timeout_seconds: float = Field(
        2.0, gt=0, description="Longest a call waits for Carveout's decision; then refused."
    )
