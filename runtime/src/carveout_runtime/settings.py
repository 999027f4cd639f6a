"""Settings every service reads from the same ``CARVEOUT_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from carveout_contracts import limits

from .addresses import IPNetwork, parse_networks
from .auth import TokenBook

if TYPE_CHECKING:
    from .event_signing import EventSigning


class SharedSettings(BaseSettings):
    """Settings every service reads from the same ``CARVEOUT_*`` variables.

    Each service subclasses this with its own ``env_prefix`` for what is its alone.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    """Where the service listens (``CARVEOUT_<SERVICE>_HOST``); each service sets its port."""
    port: int = 0
    group_id: str = "carveout"
    """The service's consumer group (each service sets its own)."""
    kafka_bootstrap: str = Field("127.0.0.1:9092", validation_alias="CARVEOUT_KAFKA_BOOTSTRAP")
    session_timeout_ms: int = Field(6000, validation_alias="CARVEOUT_SESSION_TIMEOUT_MS")
    fetch_max_wait_ms: int = Field(20, validation_alias="CARVEOUT_FETCH_MAX_WAIT_MS")
    tokens_file: Path | None = Field(None, validation_alias="CARVEOUT_TOKENS_FILE")
    regulator_token: str | None = Field(None, validation_alias="CARVEOUT_REGULATOR_TOKEN")
    gateway_token: str | None = Field(None, validation_alias="CARVEOUT_GATEWAY_TOKEN")
    auditor_token: str | None = Field(None, validation_alias="CARVEOUT_AUDITOR_TOKEN")
    log_level: str = Field("warning", validation_alias="CARVEOUT_LOG_LEVEL")
    keys_dir: Path | None = Field(
        None,
        validation_alias="CARVEOUT_KEYS_DIR",
        description="Where the service's Ed25519 signing keys are (its first is made there "
        "when it has none); unset, the events it publishes are not signed.",
    )
    trusted_keys: Path | None = Field(
        None,
        validation_alias="CARVEOUT_TRUSTED_KEYS",
        description='The trusted public keys ({"keys": [{"kid", "service", "public_key"}]}); '
        "set, every consumed grant event, breach, acknowledgement and notification outcome "
        "must carry a valid signature of its service or is dead-lettered bad_signature.",
    )
    broker_epoch_file: Path | None = Field(
        None,
        validation_alias="CARVEOUT_BROKER_EPOCH_FILE",
        description="Written by carveout up each time it (re)starts the embedded broker; "
        "a new value tells the services the log restarted empty.",
    )
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        "none",
        validation_alias="CARVEOUT_OTEL_EXPORTER",
        description="Where trace spans go: nowhere, stdout (or a file), or OTLP over HTTP.",
    )
    record_max_bytes: int = Field(
        limits.DEFAULT_RECORD_BYTES,
        ge=64 * limits.KIB,
        validation_alias="CARVEOUT_RECORD_MAX_BYTES",
        description="Largest record value a consumer processes (larger ones are dead-lettered "
        "as too_large), and the largest event a service publishes.",
    )
    http_body_max_bytes: int = Field(
        limits.DEFAULT_HTTP_BODY_BYTES,
        ge=1024,
        validation_alias="CARVEOUT_HTTP_BODY_MAX_BYTES",
        description="Largest HTTP request body (413 beyond), unless a route has its own limit.",
    )
    consumer_retry_attempts: int = Field(
        5,
        ge=1,
        le=100,
        validation_alias="CARVEOUT_CONSUMER_RETRY_ATTEMPTS",
        description="Attempts at a record that keeps failing before it is dead-lettered "
        "with reason 'failed' (an unavailable store or broker is retried without bound).",
    )
    checkpoint_interval_seconds: float = Field(
        1.0,
        ge=0.05,
        le=1.0,
        description="How often the grant and enforcement services sign a checkpoint of each "
        "transparency log that grew (DESIGN §12: at least every second).",
    )
    otel_console_file: str | None = Field(
        None,
        validation_alias="CARVEOUT_OTEL_CONSOLE_FILE",
        description="With the console exporter, append spans to this file instead of stdout "
        "({service} is replaced by the service's name).",
    )

    def event_signing(self, service: str) -> EventSigning:
        """The service's signing key and the keys it trusts, as configured."""
        from .event_signing import EventSigning

        return EventSigning.of(service, self.keys_dir, self.trusted_keys)

    def token_book(self) -> TokenBook:
        return TokenBook.configured(
            tokens_file=self.tokens_file,
            regulator=self.regulator_token,
            gateway=self.gateway_token,
            auditor=self.auditor_token,
        )


class WebhookRules(BaseSettings):
    """Where webhooks may go: read by the notification service, which calls them, and by
    the grant service, which checks grant contacts, so that both judge an address alike."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    webhook_allow_networks: str = Field(
        "",
        validation_alias=AliasChoices(
            "webhook_allow_networks", "CARVEOUT_NOTIFICATION_WEBHOOK_ALLOW_NETWORKS"
        ),
        description="Comma-separated CIDRs webhooks may reach although private, loopback or "
        "reserved (CARVEOUT_NOTIFICATION_WEBHOOK_ALLOW_NETWORKS); `carveout up` opens loopback.",
    )

    @field_validator("webhook_allow_networks")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def allow_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.webhook_allow_networks)
