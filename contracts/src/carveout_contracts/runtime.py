"""Process conventions every Carveout service follows: structured, quiet-by-default logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .auth import TokenBook

T = TypeVar("T")

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker
    from sqlalchemy import Engine


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(service: str, level: str = "warning") -> None:
    """One JSON object per line on stderr; ``warning`` unless asked for more."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "faststream", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class SharedSettings(BaseSettings):
    """Settings every service reads from the same ``CARVEOUT_*`` variables.

    Each service subclasses this with its own ``env_prefix`` for what is its alone.
    """

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", validation_alias="CARVEOUT_KAFKA_BOOTSTRAP")
    session_timeout_ms: int = Field(6000, validation_alias="CARVEOUT_SESSION_TIMEOUT_MS")
    fetch_max_wait_ms: int = Field(20, validation_alias="CARVEOUT_FETCH_MAX_WAIT_MS")
    tokens_file: Path | None = Field(None, validation_alias="CARVEOUT_TOKENS_FILE")
    regulator_token: str | None = Field(None, validation_alias="CARVEOUT_REGULATOR_TOKEN")
    gateway_token: str | None = Field(None, validation_alias="CARVEOUT_GATEWAY_TOKEN")
    auditor_token: str | None = Field(None, validation_alias="CARVEOUT_AUDITOR_TOKEN")
    log_level: str = Field("warning", validation_alias="CARVEOUT_LOG_LEVEL")

    def token_book(self) -> TokenBook:
        return TokenBook.configured(
            tokens_file=self.tokens_file,
            regulator=self.regulator_token,
            gateway=self.gateway_token,
            auditor=self.auditor_token,
        )


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a store URL: SQLite (WAL, one file) or PostgreSQL (psycopg 3)."""
    from sqlalchemy import create_engine, event

    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    return engine


async def with_retries(
    operation: Callable[[], T], *, attempts: int, what: str, first_delay: float = 0.1
) -> T:
    """Run a store operation, retrying transient failures with exponential backoff.

    After ``attempts`` failures the last error propagates: the caller leaves the message
    unacknowledged, so it is delivered again rather than lost.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except Exception as exc:
            if attempt == attempts:
                logging.getLogger("carveout").error("%s failed %d times: %s", what, attempt, exc)
                raise
            logging.getLogger("carveout").warning(
                "%s failed (attempt %d of %d), retrying in %.2fs: %s",
                what,
                attempt,
                attempts,
                delay,
                exc,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def kafka_broker(settings: SharedSettings, client_id: str) -> KafkaBroker:
    """The FastStream Kafka broker a service publishes and subscribes with."""
    from faststream.kafka import KafkaBroker

    return KafkaBroker(
        settings.kafka_bootstrap,
        enable_idempotence=False,  # the embedded broker (Tansu) has no idempotent producer
        acks="all",
        linger_ms=1,
        allow_auto_create_topics=False,
        client_id=client_id,
        logger=logging.getLogger("faststream"),
    )


async def start_broker(broker: KafkaBroker, bootstrap: str, deadline_s: float = 60) -> None:
    """Connect, retrying while the broker is not up yet; give up with a clear error."""
    delay = 0.2
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while True:
        try:
            await broker.start()
            return
        except Exception as exc:
            if loop.time() > give_up:
                raise RuntimeError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from exc
            logging.getLogger("carveout").warning(
                "Kafka broker at %s not reachable yet (%s); retrying", bootstrap, exc
            )
            with contextlib.suppress(Exception):
                await broker.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
