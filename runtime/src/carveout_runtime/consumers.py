"""The thin shape of every consumer: size, decode, dedupe, process; dead letters for what
can never be processed; the subscriber that feeds it and commits offsets after it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from faststream.kafka.annotations import KafkaMessage

from carveout_contracts import limits

from .commits import OffsetCommits
from .inbound import Inbound
from .retries import ConsumerHealth, describe_error, retrying
from .settings import SharedSettings

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker
    from faststream.kafka.subscriber.usecase import DefaultSubscriber

    from .event_signing import EventSigning


REMEMBERED_EVENT_IDS = 100_000
"""Event ids a service's consumer keeps in memory as processed (a few megabytes): after a
broker restart every topic put back from the stores is read again, each record a duplicate
(measured under chaos: a notification replica asking the store for each fell behind)."""


class Seen:
    """What a ``process`` returns for an event it finds it has handled before (when only
    it can tell: see the enforcement replicas' grants consumer)."""


SEEN = Seen()

Process = Callable[[Any, Inbound], Awaitable[Seen | None]]
"""``(event, inbound)``: store a decoded event's effects and its processed mark together."""


class DeadLetter(Protocol):
    """Set a message aside on the dead-letter topic.

    ``message`` is the FastStream message or the Kafka record it came in; ``health`` the
    consumer that waits meanwhile, shown stalled while the broker is unavailable.
    """

    async def __call__(
        self,
        value: bytes,
        reason: str,
        error: str,
        message: Any,
        health: ConsumerHealth | None = None,
    ) -> None: ...


def too_large(value: bytes | None, most: int) -> str | None:
    """Why a record's value is over the record limit, or ``None`` when it is not."""
    size = len(value or b"")
    if size <= most:
        return None
    return (
        f"record value is {size} bytes, over the limit of {most} bytes (CARVEOUT_RECORD_MAX_BYTES)"
    )


@dataclass
class EventHandler:
    """The thin shape of every consumer: size, decode, dedupe, process; dead-letter what
    can never be processed and move on.

    ``process`` must store its effects and the processed mark in one transaction; the
    Kafka offset is committed only after it returns (the subscriber's ack policy).
    A record over ``max_bytes`` is dead-lettered ``too_large`` before it is decoded; one
    whose processing fails ``retry_attempts`` times is dead-lettered ``failed``. Only an
    unavailable dependency is waited for without bound, shown in ``health``.
    """

    topic: str
    is_processed: Callable[[str], bool]
    process: Process
    dead_letter: DeadLetter
    retry_attempts: int = 5
    max_bytes: int = limits.DEFAULT_RECORD_BYTES
    health: ConsumerHealth | None = None
    signatures: EventSigning | None = None
    """Checks each record's signature (DESIGN §12) before it is read; ``None``: unchecked."""
    remembered: int = 0
    """How many event ids this consumer knows are processed, kept in memory (the newest;
    none by default): a record delivered again (a rebalance, a topic put back from the
    stores after a broker restart) is then skipped without asking the store."""
    processed: int = field(default=0, init=False)
    duplicates: int = field(default=0, init=False)
    dead_lettered: int = field(default=0, init=False)
    failed: int = field(default=0, init=False)
    _known: dict[str, None] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.health is None:
            self.health = ConsumerHealth("consumer", self.topic)

    async def handle(self, value: bytes, message: Any) -> None:
        from carveout_contracts.codec import PoisonMessage, decode

        oversize = too_large(value, self.max_bytes)
        if oversize is not None:
            await self._set_aside(value, "too_large", oversize, message)
            return
        if self.signatures is not None:
            record = getattr(message, "raw_message", message)
            refusal = self.signatures.refusal(self.topic, value, record.headers)
            if refusal is not None:
                await self._set_aside(value, "bad_signature", refusal, message)
                return
        try:
            event = decode(self.topic, value)
        except PoisonMessage as poison:
            await self._set_aside(value, poison.reason, poison.error, message)
            return
        except Exception as exc:  # reading it can never succeed later: set it aside
            await self._set_aside(value, "invalid", describe_error(exc), message)
            return
        what = f"processing {event.type} {event.event_id}"
        inbound = Inbound.of(getattr(message, "raw_message", message), self.health)
        try:
            await retrying(
                lambda: self._once(event, inbound),
                what=what,
                failures=self.retry_attempts,
                health=self.health,
            )
        except Exception as exc:
            logging.getLogger("carveout").exception("%s: set aside as failed", what)
            await self._set_aside(value, "failed", describe_error(exc), message)
            self.failed += 1

    async def _set_aside(self, value: bytes, reason: str, error: str, message: Any) -> None:
        await self.dead_letter(value, reason, error, message, self.health)
        self.dead_lettered += 1

    async def _once(self, event: Any, inbound: Inbound) -> None:
        event_id = str(event.event_id)
        if event_id in self._known or self.is_processed(event_id):
            self._remember(event_id)
            self.duplicates += 1
            return
        seen = await self.process(event, inbound) is SEEN
        # Returned: its processed mark is committed (or it was there before).
        self._remember(event_id)
        if seen:
            self.duplicates += 1
            return
        self.processed += 1

    def _remember(self, event_id: str) -> None:
        if self.remembered <= 0:
            return
        self._known.pop(event_id, None)
        self._known[event_id] = None  # the newest last: the oldest go first
        if len(self._known) > self.remembered:
            del self._known[next(iter(self._known))]


def dead_letter_publisher(broker: KafkaBroker, service: str) -> DeadLetter:
    """Publish a dead-letter event for a message ``service`` could not process.

    While the broker is unavailable it is tried again without bound (the record is not
    done until its dead letter is out); the dead letter itself always fits.
    """
    from carveout_contracts import codec, topics

    log = logging.getLogger(f"carveout.{service}")

    async def dead_letter(
        value: bytes,
        reason: str,
        error: str,
        message: Any,
        health: ConsumerHealth | None = None,
    ) -> None:
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
            health=health,
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


def group_options(
    settings: SharedSettings, group_id: str, *, commit_each: bool = True
) -> dict[str, Any]:
    """How every Carveout consumer reads in its group: from the earliest record, its offset
    committed once the handler returns (nacked on error: the record comes again), or, with
    ``commit_each`` false, by the caller (:mod:`.commits`); rebalanced within the
    settings' session timeout."""
    from faststream import AckPolicy

    session_ms = settings.session_timeout_ms
    return dict(
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR if commit_each else AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=max(100, session_ms // 6),
        rebalance_timeout_ms=session_ms,
    )


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
) -> tuple[DefaultSubscriber, OffsetCommits]:
    """Subscribe ``handler`` to ``topic`` with raw bytes; the offsets of the records it has
    processed are committed by the :class:`~.commits.OffsetCommits` returned (its ``run``
    is to be run beside the subscriber).

    A handler dead-letters what it cannot process and waits out an unavailable dependency,
    so it raises only when stopped; then nothing of the record is committed, and it comes
    again. ``after`` is told of each record once it is handled (for progress tracking).
    FastStream's Prometheus middleware counts and times each record
    (``carveout_kafka_received_messages_total``).
    """
    commits = OffsetCommits()

    async def raw_body(message: Any) -> bytes:
        return bytes(message.body)

    subscriber: DefaultSubscriber = broker.subscriber(
        topic,
        decoder=raw_body,
        fetch_max_wait_ms=fetch_max_wait_ms or settings.fetch_max_wait_ms,
        title=f"{group_id}/{topic}",
        description=description,
        **group_options(settings, group_id, commit_each=False),
    )

    @subscriber
    async def on_message(body: bytes, message: KafkaMessage) -> None:
        await handler.handle(body, message)
        if after is not None:
            after(message.raw_message)
        commits.processed(message.raw_message)
        if commits.due():
            await commits.flush(subscriber.consumer)

    return subscriber, commits


def consume(
    broker: KafkaBroker,
    topic: str,
    *,
    process: Process,
    is_processed: Callable[[str], bool],
    dead_letter: DeadLetter,
    group_id: str,
    settings: SharedSettings,
    retry_attempts: int | None = None,
    signatures: EventSigning | None = None,
    service: str | None = None,
    **options: Any,
) -> tuple[EventHandler, DefaultSubscriber, OffsetCommits]:
    """An :class:`EventHandler` for ``topic``, the subscriber feeding it and its commits.

    A record is tried ``retry_attempts`` times (``settings.consumer_retry_attempts`` unless
    given) before it is dead-lettered ``failed``. ``options`` are :func:`subscribe`'s
    (``description``, ``after``, ``fetch_max_wait_ms``).
    """
    handler = EventHandler(
        topic=topic,
        is_processed=is_processed,
        process=process,
        dead_letter=dead_letter,
        retry_attempts=retry_attempts or settings.consumer_retry_attempts,
        max_bytes=settings.record_max_bytes,
        health=ConsumerHealth(service or group_id, topic),
        signatures=signatures,
        remembered=REMEMBERED_EVENT_IDS,
    )
    subscriber, commits = subscribe(
        broker, topic, handler, group_id=group_id, settings=settings, **options
    )
    return handler, subscriber, commits
