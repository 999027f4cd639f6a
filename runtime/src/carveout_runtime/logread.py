"""Reading topics without a group: whole, up to the ends they have now, or followed.

Replay, digests' audits and the operator commands read the log this way: partitions are
assigned by hand (no group to join, no offsets committed). A whole read takes the end
offsets once at the start and stops there, so a live system appending meanwhile never
makes it run forever; following (``carveout tail``) keeps waiting for new records until
its caller stops.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

ProgressCallback = Callable[[int, int], None]
"""``(records read so far, records to read in all)``."""


async def partitions(consumer: Any, topic: str) -> list[TopicPartition]:
    """``topic``'s partitions, asking the broker again when the client does not know them yet."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(partitions)]


def _consumer(bootstrap: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer in no group that commits nothing: reading never moves a service's offsets."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **options
    )


async def _all_partitions(consumer: Any, topic_names: Sequence[str]) -> list[TopicPartition]:
    return [tp for topic in topic_names for tp in await partitions(consumer, topic)]


async def read_topics(
    bootstrap: str,
    topic_names: Sequence[str],
    *,
    batch_records: int = 10_000,
    on_progress: ProgressCallback | None = None,
) -> AsyncGenerator[list[Any], None]:
    """Yield every record now in ``topic_names``, in batches, in order within each partition.

    Records are aiokafka ``ConsumerRecord`` objects (``topic``, ``partition``, ``offset``,
    ``timestamp`` in ms, ``key``, ``value``, ``headers``). A topic that does not exist reads
    as empty.
    """
    consumer = _consumer(
        bootstrap,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        await consumer.start()
        tps = await _all_partitions(consumer, topic_names)
        if not tps:
            return
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        total = sum(ends[tp] - starts[tp] for tp in remaining)
        read = 0
        if on_progress is not None:
            on_progress(0, total)
        if not remaining:
            return
        consumer.assign(list(remaining))
        for tp in remaining:
            consumer.seek(tp, starts[tp])
        batch: list[Any] = []
        corrected: set[TopicPartition] = set()
        while remaining:
            fetched = await consumer.getmany(
                *remaining, timeout_ms=200, max_records=batch_records - len(batch)
            )
            for tp, records in fetched.items():
                if tp not in corrected:
                    # Some brokers (Tansu) answer an offset look-up with the start of the
                    # last record batch, not the end; a fetch's high watermark is right.
                    true_end = max(ends[tp], consumer.highwater(tp) or 0)
                    total += true_end - ends[tp]
                    ends[tp] = true_end
                    corrected.add(tp)
                end = ends[tp]
                if records[-1].offset >= end:
                    records = [r for r in records if r.offset < end]
                batch += records
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if batch and (len(batch) >= batch_records or not remaining):
                # Whole batches, not each fetch's few hundred records: the consumers of
                # a replay pay a store transaction per batch.
                read += len(batch)
                if on_progress is not None:
                    on_progress(read, total)
                yield batch
                batch = []
    finally:
        await consumer.stop()


async def log_ends(bootstrap: str, topic_names: Sequence[str]) -> dict[TopicPartition, int]:
    """Each partition's true end offset (the next offset to be written).

    Taken from a fetch's high watermark rather than an offset look-up, which some brokers
    (Tansu) answer with the start of the last record batch.
    """
    consumer = _consumer(bootstrap, fetch_max_wait_ms=5)
    try:
        await consumer.start()
        return await true_ends(consumer, await _all_partitions(consumer, topic_names))
    finally:
        await consumer.stop()


async def true_ends(consumer: Any, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """:func:`log_ends` with a started consumer of the caller's (its assignment changes)."""
    looked_up = await consumer.end_offsets(tps) if tps else {}
    ends = {tp: end for tp, end in looked_up.items()}
    pending = [tp for tp, end in looked_up.items() if end > 0]
    if pending:
        consumer.assign(pending)
        for tp in pending:
            consumer.seek(tp, looked_up[tp] - 1)
        while pending:
            await consumer.getmany(*pending, timeout_ms=200, max_records=1)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    ends[tp] = max(ends[tp], highwater)
                    pending.remove(tp)
    return ends


async def follow(
    bootstrap: str,
    topic_names: Sequence[str],
    *,
    since: Mapping[TopicPartition, int] | None = None,
    poll_ms: int = 200,
) -> AsyncGenerator[list[Any], None]:
    """Yield ``topic_names``' records a fetch at a time, in order within each partition,
    and keep waiting for new ones until the caller stops iterating.

    Each partition is read from its offset in ``since`` (:func:`log_ends`' answer, say, for
    only what is appended from now on), or from its beginning when ``since`` does not name
    it. The partitions are those the topics have when it starts: a topic that does not
    exist then is not followed. Iterate inside ``contextlib.aclosing`` so that stopping
    early stops the consumer at once, not whenever the generator is collected.
    """
    consumer = _consumer(bootstrap, fetch_max_wait_ms=50)
    try:
        await consumer.start()
        tps = await _all_partitions(consumer, topic_names)
        if not tps:
            return
        starts = since or {}
        consumer.assign(tps)
        for tp in tps:
            if tp in starts:
                consumer.seek(tp, starts[tp])
        unnamed = [tp for tp in tps if tp not in starts]
        if unnamed:  # with no partitions given, seek_to_beginning would move every one
            await consumer.seek_to_beginning(*unnamed)
        while True:
            fetched = await consumer.getmany(timeout_ms=poll_ms)
            batch = [record for records in fetched.values() for record in records]
            if batch:
                yield batch
    finally:
        await consumer.stop()


async def read_all(
    bootstrap: str, topic_names: Sequence[str], on_progress: ProgressCallback | None = None
) -> list[Any]:
    """Every record now in ``topic_names``, in memory (for the smaller topics)."""
    records: list[Any] = []
    async for batch in read_topics(bootstrap, topic_names, on_progress=on_progress):
        records += batch
    return records


def by_append_time(records: Iterable[Any]) -> list[Any]:
    """Records of several partitions merged by timestamp, each partition's order kept.

    This approximates the order a live service met them in, across partitions and topics.
    """
    partitions: dict[tuple[str, int], list[Any]] = {}
    for record in records:
        partitions.setdefault((record.topic, record.partition), []).append(record)
    return list(heapq.merge(*partitions.values(), key=lambda r: r.timestamp))
