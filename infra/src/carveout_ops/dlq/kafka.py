"""The dead-letter topic's Kafka I/O: loading it, reading a truncated entry's original
back from its source, and re-driving entries (publishing them again, and recording it)."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from carveout_contracts import codec, topics
from carveout_contracts.events import MessageRedriven, RedrivenData
from carveout_runtime.kafka import PRODUCER_OPTIONS
from carveout_runtime.logread import read_all

from .model import DeadLetters, DlqError, Entry, Redriven, fold, same_record

PRODUCER = "carveout-cli"

SOURCE_READ_S = 10.0
"""How long a re-drive waits for a truncated entry's original record from its source."""


async def load(bootstrap: str) -> DeadLetters:
    """Read the whole dead-letter topic, up to its end when called (no consumer group)."""
    try:
        records = await read_all(bootstrap, [topics.DEADLETTER])
    except KafkaError as exc:
        raise DlqError(f"cannot read {topics.DEADLETTER} at {bootstrap}: {exc}") from None
    return fold(records)


async def _start(client: AIOKafkaProducer | AIOKafkaConsumer, bootstrap: str) -> None:
    """Start a producer or a consumer; :class:`DlqError` when the broker does not answer."""
    try:
        await client.start()
    except KafkaError as exc:
        await client.stop()  # one that failed to start may still hold connections and tasks
        raise DlqError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from None


def operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


async def redrive(
    bootstrap: str, entries: Sequence[Entry], *, by: str | None = None, dry_run: bool = False
) -> list[Redriven]:
    """Publish each entry's original record again to its source topic, and record it.

    Entries for the same source record (one record two services gave up on) publish it
    once. Each entry re-driven gets a ``message.redriven`` event on the dead-letter topic.
    """
    who = by or operator()
    done: list[Redriven] = []
    first_of: dict[tuple[str, int, int], Redriven] = {}
    if dry_run:
        for entry in entries:
            done.append(same_record(entry, first_of) or Redriven(entry, None, None))
        return done
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=PRODUCER, **PRODUCER_OPTIONS)
    await _start(producer, bootstrap)
    try:
        for entry in entries:
            result = same_record(entry, first_of)
            if result is None:
                result = await _publish(producer, entry, bootstrap)
                topic, partition, offset = entry.source
                if partition is not None and offset is not None:
                    first_of[(topic, partition, offset)] = result
            marker = MessageRedriven(
                producer=PRODUCER,
                key=entry.event.data.source_topic,
                data=RedrivenData(
                    entry_id=entry.event.event_id,
                    source_topic=entry.event.data.source_topic,
                    partition=result.partition,
                    offset=result.offset,
                    by=who,
                ),
            )
            await producer.send_and_wait(
                topics.DEADLETTER,
                codec.encode_value(marker),
                key=marker.key.encode(),
                headers=codec.headers(entry.event.data.headers.get("traceparent")),
            )
            done.append(result)
    finally:
        await producer.stop()
    return done


async def read_original(bootstrap: str, entry: Entry, within_s: float = SOURCE_READ_S) -> bytes:
    """A truncated entry's original value, read from its source position and checked
    against its SHA-256; :class:`DlqError` when the source no longer has it as it was."""
    data = entry.event.data
    topic, partition, offset = entry.source
    where = f"{topic} {partition}@{offset}"
    if partition is None or offset is None:
        raise DlqError(f"entry {entry.id} kept only the head of its value and no source position")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=PRODUCER,
        enable_auto_commit=False,
        auto_offset_reset="none",  # an offset the broker no longer has is an error, not 0
        max_partition_fetch_bytes=max(data.size or 0, 1024 * 1024) + 64 * 1024,
        fetch_max_bytes=max(data.size or 0, 1024 * 1024) + 64 * 1024,
    )
    await _start(consumer, bootstrap)
    gone = (
        f"entry {entry.id} kept only the first bytes of its {data.size}-byte value, and "
        f"{where} is no longer retained by the broker: it cannot be re-driven"
    )
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        async with asyncio.timeout(within_s):
            while True:
                try:
                    batch = await consumer.getmany(tp, timeout_ms=200)
                except OffsetOutOfRangeError:
                    raise DlqError(gone) from None
                records = batch.get(tp, [])
                if records:
                    break
    except TimeoutError:
        raise DlqError(gone) from None
    except KafkaError as exc:
        raise DlqError(f"cannot read {where}: {exc}") from None
    finally:
        await consumer.stop()
    record = records[0]
    if record.offset != offset:
        raise DlqError(gone)
    value = bytes(record.value or b"")
    digest = hashlib.sha256(value).hexdigest()
    if digest != data.sha256:
        raise DlqError(
            f"the record now at {where} is not the one entry {entry.id} set aside "
            f"(sha256 {digest[:12]}…, expected {(data.sha256 or '?')[:12]}…): not re-driven"
        )
    return value


async def _publish(producer: AIOKafkaProducer, entry: Entry, bootstrap: str) -> Redriven:
    topic, source_partition, _ = entry.source
    key = entry.key()
    value = await read_original(bootstrap, entry) if entry.truncated else entry.original()
    try:
        sent = await producer.send_and_wait(
            topic,
            value,
            key=key,
            # Keyed records go where their key does (the default partitioner, as first
            # published); a record without a key goes back to its own partition.
            partition=source_partition if key is None else None,
            headers=entry.headers(),
        )
    except KafkaError as exc:
        raise DlqError(f"could not publish entry {entry.id} to {topic}: {exc}") from None
    return Redriven(entry, sent.partition, sent.offset)
