"""Configuration of the enforcement service: ``CARVEOUT_ENFORCEMENT_*`` plus ``CARVEOUT_*``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from carveout_contracts import limits
from carveout_runtime.settings import SharedSettings


class EnforcementSettings(SharedSettings):
    model_config = SettingsConfigDict(env_prefix="CARVEOUT_ENFORCEMENT_", extra="ignore")

    port: int = 8082
    database_url: str = "sqlite:///var/enforcement.db"
    group_id: str = "carveout-enforcement"
    access_group_id: str = "carveout-enforcement-access"
    store_retry_attempts: int = 5
    batch_max_records: int = Field(2000, description="Most access events judged in one batch.")
    grants_fetch_max_wait_ms: int = Field(
        5, description="Longest a grants fetch waits for data: revocations arrive this fast."
    )
    batch_timeout_ms: int = Field(20, description="Longest wait to fill a batch of accesses.")
    grants_sync_seconds: float = Field(
        5.0, description="Longest an access batch waits for the grant projection to catch up."
    )
    late_grant_guard_ms: int = Field(
        25,
        description=(
            "Accesses are judged once their record time is this old, so every grant event "
            "stamped before them has landed on the log; more than a publish ever takes."
        ),
    )
    stale_after_seconds: float = Field(
        1.0, description="Decisions fail closed ('stale') when the grants log is older than this."
    )
    consistency_wait_seconds: float = Field(
        1.0, description="Longest a decision waits for the action named by min_consistency."
    )
    max_future_skew_seconds: float = Field(
        limits.DEFAULT_MAX_FUTURE_SKEW_SECONDS,
        ge=0,
        description="How far ahead of now an access's occurred_at may be; later ones are "
        "refused (422) or dead-lettered (invalid).",
    )
    access_body_max_bytes: int = Field(
        limits.DEFAULT_ACCESS_BODY_BYTES,
        ge=1024,
        description="Largest body of POST /v1/access (a batch of accesses); 413 beyond.",
    )
    enforcer_id: str | None = Field(
        None,
        min_length=1,
        max_length=limits.MAX_ID,
        description="This replica's name in its acknowledgements and heartbeats (DESIGN §12); "
        "by default the host name and the service's port.",
    )
    ack_queue_max: int = Field(
        4096,
        ge=1,
        le=1_000_000,
        description="Acknowledgements waiting to be published; beyond, they are left to the "
        "heartbeats (the grants consumer never waits for them).",
    )
    decision_log: bool = Field(
        True,
        description="Keep the decision logs (DESIGN §12: a Merkle tree per access partition, "
        "signed checkpoints); off only to measure what they cost.",
    )
    decision_body_max_bytes: int = Field(
        limits.DEFAULT_DECISION_BODY_BYTES,
        ge=1024,
        description="Largest body of POST /v1/decisions; 413 beyond.",
    )
    authz_record_buffer: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Accesses /v1/authz/ recorded (x-carveout-record: true) and not yet "
        "published; while it is full, requests asking to be recorded are refused with 503.",
    )
