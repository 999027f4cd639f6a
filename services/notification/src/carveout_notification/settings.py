"""Configuration of the notification service: ``CARVEOUT_NOTIFICATION_*`` plus ``CARVEOUT_*``."""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from carveout_runtime.settings import SharedSettings, WebhookRules


def _env(name: str, env: str) -> AliasChoices:
    """Read from ``env`` (no service prefix), or from the field's name when passed in code."""
    return AliasChoices(name, env)


class NotificationSettings(SharedSettings, WebhookRules):
    model_config = SettingsConfigDict(env_prefix="CARVEOUT_NOTIFICATION_", extra="ignore")

    port: int = 8083
    database_url: str = "sqlite:///var/notification.db"
    group_id: str = "carveout-notification"
    store_retry_attempts: int = 5
    smtp_host: str = Field("127.0.0.1", validation_alias=_env("smtp_host", "CARVEOUT_SMTP_HOST"))
    smtp_port: int = Field(25, validation_alias=_env("smtp_port", "CARVEOUT_SMTP_PORT"))
    smtp_from: str = Field(
        "carveout@localhost", validation_alias=_env("smtp_from", "CARVEOUT_SMTP_FROM")
    )
    smtp_tls: Literal["none", "starttls", "tls"] = Field(
        "none",
        validation_alias=_env("smtp_tls", "CARVEOUT_SMTP_TLS"),
        description="none: plain SMTP; starttls: upgrade after connecting (required); "
        "tls: TLS from the first byte (usually port 465).",
    )
    smtp_username: str | None = Field(
        None, validation_alias=_env("smtp_username", "CARVEOUT_SMTP_USERNAME")
    )
    smtp_password: SecretStr | None = Field(
        None, validation_alias=_env("smtp_password", "CARVEOUT_SMTP_PASSWORD")
    )
    smtp_ca_file: str | None = Field(
        None,
        validation_alias=_env("smtp_ca_file", "CARVEOUT_SMTP_CA_FILE"),
        description="PEM certificates to trust for the SMTP server, instead of the system's.",
    )
    delivery_deadline_seconds: float = Field(
        10.0,
        gt=0,
        description="Total time one attempt (webhook or email) may take: resolve, connect, "
        "send and the whole answer.",
    )
    delivery_concurrency: int = Field(
        64, ge=1, description="Attempts in flight at once, across all subscriptions."
    )
    delivery_per_receiver: int = Field(
        4,
        ge=1,
        description="Attempts in flight at once to one webhook host: however many slow "
        "receivers one host serves, they hold at most this many of the attempts.",
    )
    delivery_max_attempts: int = Field(6, description="Attempts before notification.failed.")
    retry_base_seconds: float = Field(1.0, description="First retry delay; doubles each time.")
    retry_cap_seconds: float = Field(300.0, description="Longest delay between two attempts.")
    delivery_poll_seconds: float = 0.5
    grants_sync_seconds: float = Field(
        5.0,
        gt=0,
        description="Longest one wait, before a breach of a grant not known yet is told, for "
        "the grant events already on the log to be stored; it is waited for again after.",
    )
    replica_id: str | None = Field(
        None,
        max_length=200,
        description="This replica's name in the claims it takes on deliveries; unique among "
        "the replicas sharing a store. Unset: host:port (host/pid<pid> without a port). A "
        "replica restarted under the same id takes back its own claims at once.",
    )
    lease_seconds: float = Field(
        10.0,
        gt=0,
        description="How long a replica's claim on a delivery lasts unless renewed (it is "
        "renewed after a third while the attempt runs); a replica dead or stalled this long "
        "is taken over by another.",
    )

    @model_validator(mode="after")
    def _name_the_replica(self) -> NotificationSettings:
        # Stable across restarts of one replica (the same host and port), distinct between
        # replicas on one host (each listens on its own port).
        if self.replica_id is None:
            host = socket.gethostname()
            self.replica_id = f"{host}:{self.port}" if self.port else f"{host}/pid{os.getpid()}"
        return self

    @property
    def replica(self) -> str:
        """The replica id in force (always set once validated)."""
        assert self.replica_id is not None
        return self.replica_id
