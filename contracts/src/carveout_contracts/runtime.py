"""Process conventions every Carveout service follows: structured, quiet-by-default logs."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from faststream.kafka.annotations import KafkaMessage
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import limits
from .auth import TokenBook

T = TypeVar("T")

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker
    from faststream.kafka.subscriber.usecase import DefaultSubscriber
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

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap: str = Field("127.0.0.1:9092", validation_alias="CARVEOUT_KAFKA_BOOTSTRAP")
    session_timeout_ms: int = Field(6000, validation_alias="CARVEOUT_SESSION_TIMEOUT_MS")
    fetch_max_wait_ms: int = Field(20, validation_alias="CARVEOUT_FETCH_MAX_WAIT_MS")
    tokens_file: Path | None = Field(None, validation_alias="CARVEOUT_TOKENS_FILE")
    regulator_token: str | None = Field(None, validation_alias="CARVEOUT_REGULATOR_TOKEN")
    gateway_token: str | None = Field(None, validation_alias="CARVEOUT_GATEWAY_TOKEN")
    auditor_token: str | None = Field(None, validation_alias="CARVEOUT_AUDITOR_TOKEN")
    log_level: str = Field("warning", validation_alias="CARVEOUT_LOG_LEVEL")
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
    otel_console_file: str | None = Field(
        None,
        validation_alias="CARVEOUT_OTEL_CONSOLE_FILE",
        description="With the console exporter, append spans to this file instead of stdout "
        "({service} is replaced by the service's name).",
    )

    def token_book(self) -> TokenBook:
        return TokenBook.configured(
            tokens_file=self.tokens_file,
            regulator=self.regulator_token,
            gateway=self.gateway_token,
            auditor=self.auditor_token,
        )


def make_engine(url: str, *, rebuild: bool = False) -> Engine:
    """A SQLAlchemy engine for a store URL: SQLite (WAL, one file) or PostgreSQL (psycopg 3).

    ``rebuild``: the store is being rebuilt from the log (a replay), so SQLite need not
    sync to disk on every commit; a crash means replaying again, never a lost fact.
    """
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
        cursor.execute("PRAGMA synchronous=OFF" if rebuild else "PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        # Checkpoint the WAL every ~80 MB rather than every 4 MB: hot index pages are then
        # copied once per checkpoint instead of once per commit (a third of the write cost).
        cursor.execute("PRAGMA wal_autocheckpoint=20000")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    return engine


def create_tables(engine: Engine, metadata: Any) -> list[str]:
    """Create a store's tables, and add the nullable columns a newer release brought.

    A store made by an earlier release keeps its rows: columns added since are created
    empty (they are always nullable), so upgrading never means deleting ``var/``.
    Returns the columns added, as ``table.column``.
    """
    from sqlalchemy import inspect

    metadata.create_all(engine)
    inspector = inspect(engine)
    added = []
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                if not column.nullable:
                    raise RuntimeError(
                        f"table {table.name} lacks the required column {column.name}: "
                        "rebuild this store (carveout replay) or start from an empty one"
                    )
                kind = column.type.compile(dialect=engine.dialect)
                connection.exec_driver_sql(
                    f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'
                )
                added.append(f"{table.name}.{column.name}")
            if added:
                for index in table.indexes:  # those of the added columns
                    index.create(connection, checkfirst=True)
    if added:
        logging.getLogger("carveout").warning("store upgraded: added columns %s", added)
    return added


async def with_retries(
    operation: Callable[[], T],
    *,
    attempts: int,
    what: str,
    first_delay: float = 0.1,
    in_thread: bool = False,
) -> T:
    """Run a store operation, retrying transient failures with exponential backoff.

    After ``attempts`` failures the last error propagates: the caller leaves the message
    unacknowledged, so it is delivered again rather than lost.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            if in_thread:  # long store work: the event loop keeps serving meanwhile
                return await asyncio.to_thread(operation)
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


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Auto create topics is disabled" not in record.getMessage()


def _faststream_logger() -> logging.Logger:
    logger = logging.getLogger("carveout.faststream")
    if not any(isinstance(f, _DropKnownNoise) for f in logger.filters):
        logger.addFilter(_DropKnownNoise())
    return logger


def kafka_broker(settings: SharedSettings, client_id: str) -> KafkaBroker:
    """The FastStream Kafka broker a service publishes and subscribes with."""
    from faststream.kafka import KafkaBroker

    from .telemetry import broker_middlewares

    return KafkaBroker(
        settings.kafka_bootstrap,
        enable_idempotence=False,  # the embedded broker (Tansu) has no idempotent producer
        acks="all",
        linger_ms=1,
        allow_auto_create_topics=False,
        client_id=client_id,
        logger=_faststream_logger(),
        log_level=logging.DEBUG,  # per-message "Received"/"Processed" lines only when asked for
        middlewares=broker_middlewares(settings),
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


CURRENT_RECORD: contextvars.ContextVar[Any] = contextvars.ContextVar("carveout_current_record")
"""The Kafka record an :class:`EventHandler` is processing (for progress tracking)."""

DeadLetter = Callable[[bytes, str, str, Any], Awaitable[None]]
"""``(value, reason, error, message or record)``: set a message aside on the dead-letter topic."""


class EventHandler:
    """The thin shape of every consumer: decode, dead-letter poison, dedupe, process.

    ``process`` must store its effects and the processed mark in one transaction; the
    Kafka offset is committed only after it returns (the subscriber's ack policy).
    """

    def __init__(
        self,
        topic: str,
        *,
        is_processed: Callable[[str], bool],
        process: Callable[[Any], Awaitable[None]],
        dead_letter: DeadLetter,
        retry_attempts: int = 5,
    ) -> None:
        self.topic = topic
        self.is_processed = is_processed
        self.process = process
        self.dead_letter = dead_letter
        self.retry_attempts = retry_attempts
        self.processed = 0
        self.duplicates = 0
        self.dead_lettered = 0

    async def handle(self, value: bytes, message: Any) -> None:
        from .codec import PoisonMessage, decode

        try:
            event = decode(self.topic, value)
        except PoisonMessage as poison:
            await self.dead_letter(value, poison.reason, poison.error, message)
            self.dead_lettered += 1
            return
        event_id = str(event.event_id)
        if await with_retries(
            lambda: self.is_processed(event_id),
            attempts=self.retry_attempts,
            what=f"checking {event.type} {event_id}",
        ):
            self.duplicates += 1
            return
        token = CURRENT_RECORD.set(getattr(message, "raw_message", message))
        try:
            await self.process(event)
        finally:
            CURRENT_RECORD.reset(token)
        self.processed += 1


def dead_letter_publisher(broker: KafkaBroker, service: str) -> DeadLetter:
    """Publish a dead-letter event for a message ``service`` could not process."""
    from . import codec, topics

    log = logging.getLogger(f"carveout.{service}")

    async def dead_letter(value: bytes, reason: str, error: str, message: Any) -> None:
        record = getattr(message, "raw_message", message)  # a FastStream message or a record
        event = codec.dead_letter_event(
            record, consumer=service, reason=reason, error=error, value=value
        )
        await broker.publish(
            codec.encode_value(event),
            topics.DEADLETTER,
            key=event.key.encode(),
            headers=dict(codec.text_headers(event.data.headers.get("traceparent"))),
        )
        log.warning("dead-lettered a %s message: %s: %s", event.data.source_topic, reason, error)

    return dead_letter


def subscribe(
    broker: KafkaBroker,
    topic: str,
    handler: EventHandler,
    *,
    group_id: str,
    settings: SharedSettings,
    description: str,
    after: Callable[[Any], None] | None = None,
    fetch_max_wait_ms: int | None = None,
    service: str | None = None,
) -> DefaultSubscriber:
    """Subscribe ``handler`` to ``topic`` with raw bytes, committing offsets after it returns.

    A handler that raises (after its own bounded retries) is nacked: the consumer seeks
    back and the message comes again, instead of being skipped. ``after`` is told of each
    record once it is handled (for progress tracking). Each record counts in
    ``carveout_events_consumed`` under ``service`` (the group id when not given).
    """
    from faststream import AckPolicy

    from .telemetry import EVENTS_CONSUMED

    consumed = EVENTS_CONSUMED.labels(service or group_id, topic)

    async def raw_body(message: Any) -> bytes:
        return bytes(message.body)

    subscriber = broker.subscriber(
        topic,
        group_id=group_id,
        decoder=raw_body,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.session_timeout_ms // 6),
        rebalance_timeout_ms=settings.session_timeout_ms,
        fetch_max_wait_ms=fetch_max_wait_ms or settings.fetch_max_wait_ms,
        title=f"{group_id}/{topic}",
        description=description,
    )

    @subscriber
    async def on_message(body: bytes, message: KafkaMessage) -> None:
        consumed.inc()
        await handler.handle(body, message)
        if after is not None:
            after(message.raw_message)

    return subscriber


def service_cli(
    name: str,
    summary: str,
    settings_factory: Callable[[], SharedSettings],
    app_factory: Callable[[Any], Any],
) -> Any:
    """The ``python -m carveout_<name>`` command line of a service (``serve``, ``--help``)."""
    import typer

    cli = typer.Typer(help=summary, no_args_is_help=True, add_completion=False)
    prefix = f"CARVEOUT_{name.upper()}_"

    @cli.command()
    def serve() -> None:
        """Serve the HTTP API and the Kafka subscribers until stopped (SIGINT or SIGTERM)."""
        import uvicorn

        settings = settings_factory()
        configure_logging(name, settings.log_level)
        uvicorn.run(
            app_factory(settings),
            host=getattr(settings, "host", "127.0.0.1"),
            port=int(getattr(settings, "port", 0)),
            log_level=settings.log_level,
            access_log=False,
            log_config=None,
        )

    @cli.command()
    def settings() -> None:
        """Print the settings in force (from CARVEOUT_* variables), tokens hidden."""
        values = settings_factory().model_dump(mode="json")
        for key in [k for k in values if k.endswith("_token")]:
            values[key] = "***" if values[key] else None
        typer.echo(json.dumps(values, indent=2))

    serve.__doc__ = f"{serve.__doc__} Configured by {prefix}* and CARVEOUT_* variables."
    return cli


def consume(
    broker: KafkaBroker,
    topic: str,
    *,
    process: Callable[[Any], Awaitable[None]],
    is_processed: Callable[[str], bool],
    dead_letter: DeadLetter,
    group_id: str,
    settings: SharedSettings,
    description: str,
    retry_attempts: int = 5,
    after: Callable[[Any], None] | None = None,
    fetch_max_wait_ms: int | None = None,
    service: str | None = None,
) -> tuple[EventHandler, DefaultSubscriber]:
    """An :class:`EventHandler` for ``topic`` and the subscriber feeding it."""
    handler = EventHandler(
        topic,
        is_processed=is_processed,
        process=process,
        dead_letter=dead_letter,
        retry_attempts=retry_attempts,
    )
    subscriber = subscribe(
        broker,
        topic,
        handler,
        group_id=group_id,
        settings=settings,
        description=description,
        after=after,
        fetch_max_wait_ms=fetch_max_wait_ms,
        service=service,
    )
    return handler, subscriber
