"""Process conventions every Carveout service follows: structured, quiet-by-default logs."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import stamina
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import Gauge
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import exc as sa_exc

from . import limits
from .addresses import IPNetwork, parse_networks
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


def _owner_only(db: Path) -> None:
    """The store holds every grant, decision and webhook secret: readable by its owner only.

    The file is made 0600 before SQLite opens it, so SQLite gives its ``-wal`` and ``-shm``
    files the same mode; files left by an older version are narrowed too.
    """
    import os

    os.close(os.open(db, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            file.chmod(0o600)


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


def make_engine(url: str, *, rebuild: bool = False) -> Engine:
    """A SQLAlchemy engine for a store URL: SQLite (WAL, one file) or PostgreSQL (psycopg 3).

    ``rebuild``: the store is being rebuilt from the log (a replay), so SQLite need not
    sync to disk on every commit; a crash means replaying again, never a lost fact.
    """
    from sqlalchemy import create_engine, event

    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _owner_only(Path(path))
    # Errors never show the statement's values (a subscription's signing secret, say): their
    # text reaches logs and dead letters.
    engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)

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


# --------------------------------------------------------------------------- retries

RETRY_WAIT_INITIAL_S = 0.1
RETRY_WAIT_MAX_S = 5.0
RETRY_JITTER_S = 0.25
"""Backoff between attempts: doubling from the first wait up to the most, plus up to the
jitter at random, so consumers that failed together do not retry in step."""

ERROR_CHARS = limits.MAX_REASON
"""Characters of an error's text a dead letter carries."""

STALLED = Gauge(
    "carveout_consumer_stalled_seconds",
    "How long a consumer has been waiting for an unavailable dependency (store, broker, "
    "grants log); 0 while it is processing.",
    ["service", "topic"],
)

_KAFKA_UNAVAILABLE = (KafkaConnectionError, KafkaTimeoutError)


class DependencyUnavailable(ConnectionError):
    """A dependency named by the code that found it unavailable (``broker``, ``store``)."""

    def __init__(self, dependency: str, error: BaseException) -> None:
        super().__init__(f"{dependency} unavailable: {error}")
        self.dependency = dependency


_SQLITE_UNAVAILABLE = re.compile(
    r"locked|busy|unable to open|disk i/o|readonly|database or disk is full", re.IGNORECASE
)


def _is_sqlite(exc: BaseException) -> bool:
    return type(getattr(exc, "orig", None)).__module__.startswith("sqlite3")


def unavailable_dependency(exc: BaseException, default: str | None = None) -> str | None:
    """The dependency an error says is unavailable (``store``, ``broker``), or ``None``.

    Only these are worth waiting for without bound: the same record will succeed once the
    dependency is back. ``default`` names the dependency a bare connection error or
    timeout came from (the caller knows whether it was talking to the store or the broker).
    """
    if isinstance(exc, DependencyUnavailable):
        return exc.dependency
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
            return "store"
        if isinstance(exc, sa_exc.OperationalError):
            # SQLite reports a lasting mistake ("too many SQL variables", "no such table")
            # as an OperationalError too: only a busy, locked or unreachable database is
            # worth waiting for; the rest fails the record like any other error.
            if _is_sqlite(exc) and not _SQLITE_UNAVAILABLE.search(str(exc.orig)):
                return None
            return "store"
        return None
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return "store"
    if isinstance(exc, _KAFKA_UNAVAILABLE) or (
        isinstance(exc, KafkaError) and getattr(exc, "retriable", False)
    ):
        return "broker"
    if default is not None and isinstance(exc, ConnectionError | TimeoutError):
        return default
    return None


def describe_error(exc: BaseException) -> str:
    """An error's type and message, bounded, for a dead letter (the log has the traceback)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


class ConsumerHealth:
    """Whether a consumer is stalled on an unavailable dependency, since when, and on what.

    Shown by ``/readyz`` (through :func:`carveout_contracts.ops.caught_up_check`) and as
    ``carveout_consumer_stalled_seconds{service,topic}``.
    """

    def __init__(self, service: str, topic: str) -> None:
        self.service = service
        self.topic = topic
        self.since: float | None = None
        self.dependency: str | None = None
        STALLED.labels(service, topic).set_function(self.stalled_seconds)

    def stall(self, dependency: str) -> None:
        if self.since is None:
            self.since = time.monotonic()
        self.dependency = dependency

    def recover(self) -> None:
        self.since = None
        self.dependency = None

    def stalled_seconds(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def describe(self) -> str | None:
        """``stalled: store unavailable for 12s``, or ``None`` while processing."""
        if self.since is None:
            return None
        return f"stalled: {self.dependency} unavailable for {self.stalled_seconds():.0f}s"


CURRENT_HEALTH: contextvars.ContextVar[ConsumerHealth] = contextvars.ContextVar(
    "carveout_current_health"
)
"""The health of the consumer whose record is being processed, if any."""


class _TryAgain:
    """stamina's ``on`` hook: which errors to try again after.

    An unavailable dependency: while it lasts (``unavailable`` times at most, when given),
    marking the consumer stalled. Any other error: until ``failures`` attempts have failed.
    """

    def __init__(
        self,
        what: str,
        *,
        failures: int,
        unavailable: int | None,
        dependency: str,
        health: ConsumerHealth | None,
    ) -> None:
        self.what = what
        self.failures = failures
        self.unavailable = unavailable
        self.dependency = dependency
        self.health = health
        self.failed = 0
        self.outages = 0

    def __call__(self, exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            # stamina asks about every exception, a task's cancellation included: trying
            # again after it would swallow the cancellation (a shutdown that hangs).
            return False
        log = logging.getLogger("carveout")
        dependency = unavailable_dependency(exc, self.dependency)
        if dependency is not None:
            self.outages += 1
            if self.health is not None:
                self.health.stall(dependency)
            again = self.unavailable is None or self.outages < self.unavailable
            log.warning(
                "%s: the %s is unavailable (%d times)%s: %s",
                self.what,
                dependency,
                self.outages,
                ", retrying" if again else ", giving up",
                exc,
            )
            return again
        self.failed += 1
        if self.failed >= self.failures:
            if self.failures > 1:
                log.error("%s failed %d times: %s", self.what, self.failed, describe_error(exc))
            return False
        log.warning(
            "%s failed (attempt %d of %d), retrying: %s",
            self.what,
            self.failed,
            self.failures,
            describe_error(exc),
        )
        return True


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    failures: int = 1,
    unavailable: int | None = None,
    dependency: str = "store",
    health: ConsumerHealth | None = None,
) -> T:
    """Await ``operation``, trying again with backoff and jitter (stamina).

    While a dependency is unavailable it is tried again without bound (or ``unavailable``
    times), and ``health`` shows the consumer stalled; any other error is tried
    ``failures`` times in all, then propagates.
    """
    hook = _TryAgain(
        what, failures=failures, unavailable=unavailable, dependency=dependency, health=health
    )
    async for attempt in stamina.retry_context(
        on=hook,
        attempts=None,
        timeout=None,
        wait_initial=RETRY_WAIT_INITIAL_S,
        wait_max=RETRY_WAIT_MAX_S,
        wait_jitter=RETRY_JITTER_S,
    ):
        with attempt:
            result = await operation()
    if health is not None:
        health.recover()
    return result


async def with_retries(
    operation: Callable[[], T],
    *,
    attempts: int,
    what: str,
    in_thread: bool = False,
    dependency: str = "store",
) -> T:
    """Run a store operation, trying again while the store is unavailable.

    Inside a consumer (:data:`CURRENT_HEALTH` set) that is without bound, and the consumer
    shows as stalled; elsewhere ``attempts`` times. Any other error propagates at once: a
    consumer's own bounded retries of the whole record take it from there.
    """
    health = CURRENT_HEALTH.get(None)

    async def call() -> T:
        if in_thread:  # long store work: the event loop keeps serving meanwhile
            return await asyncio.to_thread(operation)
        return operation()

    return await retrying(
        call,
        what=what,
        unavailable=None if health is not None else attempts,
        dependency=dependency,
        health=health,
    )


async def wait_set(event: asyncio.Event, within_s: float) -> bool:
    """Wait at most ``within_s`` for ``event``; says whether it was set.

    ``asyncio.timeout``, not ``asyncio.wait_for``: in Python 3.11 the latter swallows a
    cancellation that arrives as the event is set, so a loop waiting on it (a relay, the
    deliveries) went on running after it was told to stop.
    """
    try:
        async with asyncio.timeout(within_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


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


def too_large(value: bytes | None, most: int) -> str | None:
    """Why a record's value is over the record limit, or ``None`` when it is not."""
    size = len(value or b"")
    if size <= most:
        return None
    return (
        f"record value is {size} bytes, over the limit of {most} bytes (CARVEOUT_RECORD_MAX_BYTES)"
    )


class EventHandler:
    """The thin shape of every consumer: size, decode, dedupe, process; dead-letter what
    can never be processed and move on.

    ``process`` must store its effects and the processed mark in one transaction; the
    Kafka offset is committed only after it returns (the subscriber's ack policy).
    A record over ``max_bytes`` is dead-lettered ``too_large`` before it is decoded; one
    whose processing fails ``retry_attempts`` times is dead-lettered ``failed``. Only an
    unavailable dependency is waited for without bound, shown in ``health``.
    """

    def __init__(
        self,
        topic: str,
        *,
        is_processed: Callable[[str], bool],
        process: Callable[[Any], Awaitable[None]],
        dead_letter: DeadLetter,
        retry_attempts: int = 5,
        max_bytes: int = limits.DEFAULT_RECORD_BYTES,
        health: ConsumerHealth | None = None,
    ) -> None:
        self.topic = topic
        self.is_processed = is_processed
        self.process = process
        self.dead_letter = dead_letter
        self.retry_attempts = retry_attempts
        self.max_bytes = max_bytes
        self.health = health or ConsumerHealth("consumer", topic)
        self.processed = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self.failed = 0

    async def handle(self, value: bytes, message: Any) -> None:
        token = CURRENT_HEALTH.set(self.health)
        try:
            await self._handle(value, message)
        finally:
            CURRENT_HEALTH.reset(token)

    async def _handle(self, value: bytes, message: Any) -> None:
        from .codec import PoisonMessage, decode

        oversize = too_large(value, self.max_bytes)
        if oversize is not None:
            await self.dead_letter(value, "too_large", oversize, message)
            self.dead_lettered += 1
            return
        try:
            event = decode(self.topic, value)
        except PoisonMessage as poison:
            await self.dead_letter(value, poison.reason, poison.error, message)
            self.dead_lettered += 1
            return
        except Exception as exc:  # reading it can never succeed later: set it aside
            await self.dead_letter(value, "invalid", describe_error(exc), message)
            self.dead_lettered += 1
            return
        what = f"processing {event.type} {event.event_id}"
        try:
            await retrying(
                lambda: self._once(event, message),
                what=what,
                failures=self.retry_attempts,
                health=self.health,
            )
        except Exception as exc:
            logging.getLogger("carveout").exception("%s: set aside as failed", what)
            await self.dead_letter(value, "failed", describe_error(exc), message)
            self.dead_lettered += 1
            self.failed += 1

    async def _once(self, event: Any, message: Any) -> None:
        if self.is_processed(str(event.event_id)):
            self.duplicates += 1
            return
        token = CURRENT_RECORD.set(getattr(message, "raw_message", message))
        try:
            await self.process(event)
        finally:
            CURRENT_RECORD.reset(token)
        self.processed += 1


def dead_letter_publisher(broker: KafkaBroker, service: str) -> DeadLetter:
    """Publish a dead-letter event for a message ``service`` could not process.

    While the broker is unavailable it is tried again without bound (the record is not
    done until its dead letter is out); the dead letter itself always fits.
    """
    from . import codec, topics

    log = logging.getLogger(f"carveout.{service}")

    async def dead_letter(value: bytes, reason: str, error: str, message: Any) -> None:
        record = getattr(message, "raw_message", message)  # a FastStream message or a record
        event = codec.dead_letter_event(
            record, consumer=service, reason=reason, error=error, value=value
        )
        encoded = codec.encode_value(event)
        headers = dict(codec.text_headers(event.data.headers.get("traceparent")))

        async def publish() -> None:
            await broker.publish(
                encoded, topics.DEADLETTER, key=event.key.encode(), headers=headers
            )

        await retrying(
            publish,
            what="publishing a dead letter",
            dependency="broker",
            health=CURRENT_HEALTH.get(None),
        )
        log.warning(
            "dead-lettered a %s message (%s@%s): %s: %s",
            event.data.source_topic,
            event.data.source_partition,
            event.data.source_offset,
            reason,
            error,
        )

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

    A handler dead-letters what it cannot process and waits out an unavailable dependency,
    so it raises only when stopped; then it is nacked: the consumer seeks back and the
    message comes again, instead of being skipped. ``after`` is told of each
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
    retry_attempts: int | None = None,
    after: Callable[[Any], None] | None = None,
    fetch_max_wait_ms: int | None = None,
    service: str | None = None,
) -> tuple[EventHandler, DefaultSubscriber]:
    """An :class:`EventHandler` for ``topic`` and the subscriber feeding it.

    A record is tried ``retry_attempts`` times (``settings.consumer_retry_attempts`` unless
    given) before it is dead-lettered ``failed``.
    """
    handler = EventHandler(
        topic,
        is_processed=is_processed,
        process=process,
        dead_letter=dead_letter,
        retry_attempts=retry_attempts or settings.consumer_retry_attempts,
        max_bytes=settings.record_max_bytes,
        health=ConsumerHealth(service or group_id, topic),
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
