"""Reading topics without a group, whole or followed (``carveout_runtime.logread``).

The broker tests use topics of their own, so what other tests leave on the shared broker
does not matter. The producer sends with ``linger_ms`` and gathered sends, so partitions
end in batches of many records: the case where some brokers (Tansu) answer an offset
look-up with the start of the last batch instead of the end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from carveout_runtime.logread import by_append_time, follow, log_ends, read_all, read_topics

RECORDS = 5000
PARTITIONS = 3
BATCH = 700


async def new_topic(bootstrap: str, partitions: int = PARTITIONS) -> str:
    name = f"carveout.test.logread-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


def value(partition: int, n: int) -> bytes:
    return f"p{partition}-{n:06d}".encode()


async def produce(bootstrap: str, topic: str, count: int, start: int = 0) -> None:
    """``count`` records spread over the partitions, sent gathered (multi-record batches).

    Record ``n`` goes to partition ``n % PARTITIONS`` with value ``p<partition>-<n>``, so
    each partition's values increase in the order they were sent.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value(n % PARTITIONS, n), partition=n % PARTITIONS)
            for n in range(start, start + count)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def looked_up_ends(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return ends
    finally:
        await consumer.stop()


def by_partition(records: Sequence[Any]) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = defaultdict(list)
    for record in records:
        found[record.partition].append(record)
    return found


@pytest.fixture(scope="module")
async def filled(kafka_bootstrap: str) -> str:
    """A topic of its own holding ``RECORDS`` records, many to a batch."""
    topic = await new_topic(kafka_bootstrap)
    await produce(kafka_bootstrap, topic, RECORDS)
    return topic


# --------------------------------------------------------------------------- reading


@pytest.mark.broker
async def test_every_record_is_read_in_order_within_each_partition(
    kafka_bootstrap: str, filled: str
) -> None:
    records = await read_all(kafka_bootstrap, [filled])

    assert len(records) == RECORDS
    assert {r.topic for r in records} == {filled}
    for partition, found in by_partition(records).items():
        expected = [value(partition, n) for n in range(partition, RECORDS, PARTITIONS)]
        assert [r.value for r in found] == expected
        assert [r.offset for r in found] == list(range(len(expected)))


@pytest.mark.broker
async def test_batches_never_exceed_batch_records_and_cover_the_log_once(
    kafka_bootstrap: str, filled: str
) -> None:
    size = BATCH
    batches = [batch async for batch in read_topics(kafka_bootstrap, [filled], batch_records=size)]

    assert all(0 < len(batch) <= size for batch in batches)
    assert all(len(batch) == size for batch in batches[:-1])  # whole batches, not fetches
    seen = [(r.partition, r.offset) for batch in batches for r in batch]
    assert len(seen) == len(set(seen)) == RECORDS


@pytest.mark.broker
async def test_batches_spanning_fetches_stay_whole_and_stop_at_the_end_read_first(
    kafka_bootstrap: str,
) -> None:
    """7.5 MB in one partition: the broker answers a fetch with a few MB, so the read takes
    several fetches. A batch that spans two fetches still holds ``batch_records`` at most,
    and records appended meanwhile, which a later fetch brings along, are left out.
    """
    topic = await new_topic(kafka_bootstrap, partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=1024 * 1024,
    )
    payload = b"x" * 10_000
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, payload + b"%d" % n) for n in range(750)])
        batches: list[list[Any]] = []
        async for batch in read_topics(kafka_bootstrap, [topic], batch_records=100):
            if not batches:
                await asyncio.gather(*[await producer.send(topic, b"late") for _ in range(20)])
            batches.append(batch)
    finally:
        await producer.stop()

    assert [len(batch) for batch in batches] == [100] * 7 + [50]
    assert [r.value[10_000:] for b in batches for r in b] == [b"%d" % n for n in range(750)]
    assert sum((await log_ends(kafka_bootstrap, [topic])).values()) == 770


@pytest.mark.broker
async def test_log_ends_are_the_true_ends(kafka_bootstrap: str, filled: str) -> None:
    ends = await log_ends(kafka_bootstrap, [filled])

    per_partition = RECORDS // PARTITIONS
    expected = {
        TopicPartition(filled, p): per_partition + (1 if p < RECORDS % PARTITIONS else 0)
        for p in range(PARTITIONS)
    }
    assert ends == expected
    assert sum(ends.values()) == RECORDS


@pytest.mark.broker
async def test_progress_ends_at_the_number_of_records(kafka_bootstrap: str, filled: str) -> None:
    looked_up = await looked_up_ends(kafka_bootstrap, filled)
    if sum(looked_up.values()) == RECORDS:
        pytest.skip("this broker answers offset look-ups with the true end")
    progress: list[tuple[int, int]] = []
    await read_all(kafka_bootstrap, [filled], on_progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (RECORDS, RECORDS)
    assert all(done <= total for done, total in progress)


@pytest.mark.broker
async def test_a_missing_topic_and_an_empty_topic_read_as_empty(kafka_bootstrap: str) -> None:
    missing = f"carveout.test.missing-{uuid.uuid4().hex[:10]}"
    empty = await new_topic(kafka_bootstrap)

    assert await read_all(kafka_bootstrap, [missing]) == []
    assert await read_all(kafka_bootstrap, [empty]) == []
    assert [b async for b in read_topics(kafka_bootstrap, [missing, empty])] == []
    assert await log_ends(kafka_bootstrap, [missing]) == {}
    assert await log_ends(kafka_bootstrap, [empty]) == {
        TopicPartition(empty, p): 0 for p in range(PARTITIONS)
    }


@pytest.mark.broker
async def test_several_topics_are_read_together(kafka_bootstrap: str, filled: str) -> None:
    other = await new_topic(kafka_bootstrap)
    await produce(kafka_bootstrap, other, 30)

    records = await read_all(kafka_bootstrap, [filled, other])

    assert sum(1 for r in records if r.topic == filled) == RECORDS
    assert sorted(r.value for r in records if r.topic == other) == sorted(
        value(n % PARTITIONS, n) for n in range(30)
    )


@pytest.mark.broker
async def test_records_appended_after_the_read_started_are_not_waited_for(
    kafka_bootstrap: str,
) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=False, linger_ms=5
    )
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, b"old-%d" % n) for n in range(1000)])
        read: list[bytes] = []
        async with asyncio.timeout(20):  # the read must end, though the log grows meanwhile
            async for batch in read_topics(kafka_bootstrap, [topic], batch_records=100):
                read += [r.value for r in batch]
                await asyncio.gather(
                    *[await producer.send(topic, b"new-%d" % n) for n in range(50)]
                )
    finally:
        await producer.stop()

    assert read == [b"old-%d" % n for n in range(1000)]
    assert sum((await log_ends(kafka_bootstrap, [topic])).values()) == 1000 + 50 * 10


# --------------------------------------------------------------------------- following


async def next_records(batches: AsyncIterator[list[Any]], count: int) -> list[Any]:
    """The next ``count`` records ``batches`` yields (failing if they take over 10 s)."""
    found: list[Any] = []
    async with asyncio.timeout(10):
        while len(found) < count:
            found += await anext(batches)
    return found


async def topic_holding(bootstrap: str, count: int) -> tuple[str, dict[TopicPartition, int]]:
    """A topic of its own holding ``count`` records, and its ends after them."""
    topic = await new_topic(bootstrap)
    await produce(bootstrap, topic, count)
    return topic, await log_ends(bootstrap, [topic])


@pytest.mark.broker
async def test_following_from_the_ends_yields_only_what_is_appended_and_keeps_waiting(
    kafka_bootstrap: str,
) -> None:
    topic, ends = await topic_holding(kafka_bootstrap, 30)

    async with aclosing(follow(kafka_bootstrap, [topic], since=ends)) as batches:
        waiting = asyncio.ensure_future(next_records(batches, 60))
        await asyncio.sleep(0.5)  # the follower is waiting at the ends: nothing old comes
        assert not waiting.done()
        await produce(kafka_bootstrap, topic, 30, start=30)
        await asyncio.sleep(0.5)
        await produce(kafka_bootstrap, topic, 30, start=60)
        found = await waiting

    assert len(found) == 60
    for partition, records in by_partition(found).items():
        expected = [value(partition, n) for n in range(30 + partition, 90, PARTITIONS)]
        assert [r.value for r in records] == expected
        assert records[0].offset == ends[TopicPartition(topic, partition)]


@pytest.mark.broker
async def test_following_from_the_beginning_yields_the_log_then_what_is_appended(
    kafka_bootstrap: str,
) -> None:
    topic, ends = await topic_holding(kafka_bootstrap, 30)
    first = TopicPartition(topic, 0)

    # A partition ``since`` does not name is read from its beginning.
    since = {tp: end for tp, end in ends.items() if tp != first}
    async with aclosing(follow(kafka_bootstrap, [topic], since=since)) as batches:
        old = await next_records(batches, 10)
        await produce(kafka_bootstrap, topic, 3, start=30)
        new = await next_records(batches, 3)

    assert [r.value for r in old] == [value(0, n) for n in range(0, 30, PARTITIONS)]
    assert sorted(r.value for r in new) == sorted(value(n % PARTITIONS, n) for n in range(30, 33))

    async with aclosing(follow(kafka_bootstrap, [topic])) as batches:
        everything = await next_records(batches, 33)
    assert len(everything) == 33


@pytest.mark.broker
async def test_following_a_missing_topic_ends_at_once(kafka_bootstrap: str) -> None:
    missing = f"carveout.test.missing-{uuid.uuid4().hex[:10]}"

    async with asyncio.timeout(10):
        assert [b async for b in follow(kafka_bootstrap, [missing])] == []


# --------------------------------------------------------------------------- by_append_time


@dataclass(frozen=True)
class Fake:
    topic: str
    partition: int
    offset: int
    timestamp: int


def test_by_append_time_merges_by_timestamp_keeping_each_partitions_order() -> None:
    a = [Fake("carveout.grants", 0, n, t) for n, t in enumerate([10, 20, 30, 60])]
    b = [Fake("carveout.grants", 1, n, t) for n, t in enumerate([5, 25, 26, 70])]
    c = [Fake("carveout.breaches", 0, n, t) for n, t in enumerate([1, 40, 50])]
    mixed = [b[0], a[0], c[0], a[1], c[1], b[1], a[2], b[2], c[2], a[3], b[3]]

    merged = by_append_time(mixed)

    assert sorted(merged, key=lambda r: (r.topic, r.partition, r.offset)) == sorted(
        mixed, key=lambda r: (r.topic, r.partition, r.offset)
    )
    assert [r.timestamp for r in merged] == sorted(r.timestamp for r in mixed)


def test_by_append_time_never_reorders_a_partition_whose_timestamps_go_back() -> None:
    """Producer-set timestamps may go back within a partition; its order still wins."""
    a = [Fake("t", 0, n, t) for n, t in enumerate([10, 50, 20, 30])]
    b = [Fake("t", 1, n, t) for n, t in enumerate([15, 25, 40])]

    merged = by_append_time([*a, *b])

    assert [r for r in merged if r.partition == 0] == a
    assert [r for r in merged if r.partition == 1] == b
    assert len(merged) == len(a) + len(b)
    # Before a partition's step back the merge follows the timestamps.
    assert [r.timestamp for r in merged[:3]] == [10, 15, 25]


def test_by_append_time_of_nothing_is_empty() -> None:
    assert by_append_time([]) == []
