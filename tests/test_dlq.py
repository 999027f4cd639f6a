"""``carveout dlq`` and ``carveout tail`` against a real broker (no services running).

Dead-letter entries are written exactly as the services write them (``dead_letter_event``
of the record as consumed, published keyed by source topic); every test uses ids, keys
or topics of its own, so entries other tests leave on the shared broker do not matter.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from typer.testing import CliRunner

from carveout_contracts import codec, topics
from carveout_ops import dlq, tail
from carveout_ops.broker import ensure_topics
from carveout_ops.cli import app

from .kafka import access_event, signature

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def bootstrap(kafka_bootstrap: str) -> str:
    asyncio.run(ensure_topics(kafka_bootstrap))
    return kafka_bootstrap


def run(bootstrap: str, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--bootstrap", bootstrap])


async def _produce(
    bootstrap: str, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
) -> Any:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        headers = [*headers, *signature(bootstrap, topic, value)]
        return await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def poison(
    bootstrap: str,
    value: bytes,
    *,
    topic: str = topics.ACCESS,
    key: bytes | None = b"org-dlq",
    reason: str = "bad_json",
    consumer: str = "enforcement",
    record: Any = None,
) -> tuple[Any, str]:
    """Publish ``value`` to ``topic`` (unless ``record`` says where it already is) and
    dead-letter it as ``consumer`` would; returns the record and the entry id."""
    headers = [
        ("content-type", b"application/json"),
        ("traceparent", codec.new_traceparent().encode()),
    ]
    if record is None:
        sent = asyncio.run(_produce(bootstrap, topic, value, key, headers))
        record = SimpleNamespace(
            topic=topic,
            partition=sent.partition,
            offset=sent.offset,
            key=key,
            value=value,
            headers=headers,
        )
    event = codec.dead_letter_event(record, consumer=consumer, reason=reason, error="it broke")
    asyncio.run(
        _produce(
            bootstrap,
            topics.DEADLETTER,
            codec.encode_value(event),
            event.key.encode(),
            codec.headers(),
        )
    )
    return record, str(event.event_id)


async def _produce_batch(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Send ``values`` gathered, so the partition ends in one batch of several records
    (where an offset look-up on some brokers answers short of the end)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=20)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, partition=0) for value in values]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _read_from(bootstrap: str, topic: str, start: dict[int, int], count: int) -> list[Any]:
    """``count`` records of ``topic`` from the offsets in ``start`` (partition -> offset)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in start]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        found: list[Any] = []
        async with asyncio.timeout(10):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    found += records
        return found
    finally:
        await consumer.stop()


async def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def ends(bootstrap: str, topic: str) -> dict[int, int]:
    return asyncio.run(_ends(bootstrap, topic))


def listed(bootstrap: str, *filters: str) -> dict[str, Any]:
    result = run(bootstrap, "dlq", "list", "--json", "--limit", "100000", *filters)
    assert result.exit_code == 0, result.output
    return {entry["id"]: entry for entry in json.loads(result.stdout)}


def new_topic(bootstrap: str) -> str:
    name = f"carveout-test.dlq-{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(create())
    return name


# --------------------------------------------------------------------------- dlq list


def test_list_shows_an_entry_with_its_reason_source_and_original(bootstrap: str) -> None:
    key = f"org-{uuid.uuid4().hex[:8]}".encode()
    record, entry_id = poison(bootstrap, b'{"event_id": broken', key=key)

    entry = listed(bootstrap, "--topic", "access", "--reason", "bad_json")[entry_id]

    assert entry["service"] == "enforcement"
    assert entry["reason"] == "bad_json"
    assert entry["error"] == "it broke"
    assert entry["source"] == {
        "topic": topics.ACCESS,
        "partition": record.partition,
        "offset": record.offset,
        "key": key.decode(),
    }
    assert entry["original"]["value"] == '{"event_id": broken'
    assert entry["original"]["headers"]["content-type"] == "application/json"
    assert entry["redriven"] == []
    assert entry_id not in listed(bootstrap, "--service", "grant")
    assert entry_id not in listed(bootstrap, "--topic", "grants")

    # The people's view: one row per entry, with the short id, reason, source and preview.
    found = asyncio.run(dlq.load(bootstrap))
    mine = [e for e in found.entries if e.id == entry_id]
    screen = Console(record=True, width=250)
    screen.print(dlq.entries_table(mine, "test"))
    row = screen.export_text()
    for text in (entry_id[:8], "enforcement", f"access {record.partition}@{record.offset}"):
        assert text in row
    assert "bad_json" in row
    assert '{"event_id": broken' in row


def test_list_says_so_when_there_is_nothing(bootstrap: str) -> None:
    result = run(bootstrap, "dlq", "list", "--service", f"nobody-{uuid.uuid4().hex[:6]}")
    assert result.exit_code == 0
    assert "no dead-letter entries matching these filters" in result.stdout
    empty = run(bootstrap, "dlq", "list", "--json", "--service", "nobody")
    assert json.loads(empty.stdout) == []


# --------------------------------------------------------------------------- dlq redrive


def test_redrive_publishes_the_original_record_back_and_records_it(bootstrap: str) -> None:
    key = f"org-{uuid.uuid4().hex[:8]}".encode()
    original = json.dumps({**access_event(key.decode()), "version": 99}).encode()
    record, entry_id = poison(bootstrap, original, key=key, reason="unsupported_version")
    before = ends(bootstrap, topics.ACCESS)

    result = run(bootstrap, "dlq", "redrive", "--id", entry_id[:13], "--json")

    assert result.exit_code == 0, result.output
    [done] = json.loads(result.stdout)
    assert done["id"] == entry_id
    assert done["dry_run"] is False
    [copy] = asyncio.run(_read_from(bootstrap, topics.ACCESS, before, 1))
    assert copy.value == original
    assert copy.key == key
    headers = dict(copy.headers)
    assert headers["content-type"] == b"application/json"
    assert headers["traceparent"] == dict(record.headers)["traceparent"]
    assert headers[dlq.REDRIVE_HEADER] == entry_id.encode()
    assert done["published"] == {"partition": copy.partition, "offset": copy.offset}

    entries = listed(bootstrap, "--topic", "access")
    [redrive] = entries[entry_id]["redriven"]
    assert (redrive["partition"], redrive["offset"]) == (copy.partition, copy.offset)
    assert redrive["by"]
    # The record of the re-drive is not an entry of its own, and --pending leaves it out.
    assert all(e["reason"] for e in entries.values())
    assert entry_id not in listed(bootstrap, "--pending")


def test_dry_run_publishes_nothing(bootstrap: str) -> None:
    _, entry_id = poison(bootstrap, b"\xff\xfe not utf-8", key=None)
    before_source, before_dlq = ends(bootstrap, topics.ACCESS), ends(bootstrap, topics.DEADLETTER)

    result = run(bootstrap, "dlq", "redrive", "--id", entry_id, "--dry-run")

    assert result.exit_code == 0, result.output
    assert f"would re-drive {entry_id[:8]}" in result.stdout
    assert ends(bootstrap, topics.ACCESS) == before_source
    assert ends(bootstrap, topics.DEADLETTER) == before_dlq
    assert listed(bootstrap)[entry_id]["original"]["encoding"] == "base64"


def test_redrive_all_publishes_a_record_two_services_gave_up_on_once(bootstrap: str) -> None:
    topic = new_topic(bootstrap)
    record, first = poison(bootstrap, b"not json", topic=topic, consumer="enforcement")
    _, second = poison(bootstrap, record.value, topic=topic, consumer="notification", record=record)

    result = run(bootstrap, "dlq", "redrive", "--all", "--topic", topic)

    assert result.exit_code == 0, result.output
    assert f"the same record as {first[:8]}, published once" in result.stdout
    assert ends(bootstrap, topic) == {0: 2}  # the original and one copy
    entries = listed(bootstrap, "--topic", topic)
    assert len(entries[first]["redriven"]) == len(entries[second]["redriven"]) == 1

    again = run(bootstrap, "dlq", "redrive", "--all", "--topic", topic)
    assert again.exit_code == 0
    assert "nothing to re-drive" in again.stdout
    assert ends(bootstrap, topic) == {0: 2}


def test_redrive_refuses_an_unknown_id(bootstrap: str) -> None:
    before = ends(bootstrap, topics.DEADLETTER)
    unknown = str(uuid.uuid4())

    result = run(bootstrap, "dlq", "redrive", "--id", unknown)

    assert result.exit_code == 1
    assert f"no dead-letter entry has the id {unknown}" in result.stderr
    assert ends(bootstrap, topics.DEADLETTER) == before
    neither = run(bootstrap, "dlq", "redrive")
    assert neither.exit_code == 1
    assert "--id" in neither.stderr


# --------------------------------------------------------------------------- tail


def test_tail_prints_the_events_as_json_lines_and_stops_at_the_end(bootstrap: str) -> None:
    topic = new_topic(bootstrap)
    events = [access_event(f"org-tail-{i}") for i in range(3)]
    values = [json.dumps(event).encode() for event in events] + [b"\x00garbage"]
    asyncio.run(_produce_batch(bootstrap, topic, values))

    result = run(bootstrap, "tail", topic, "--from-beginning", "--no-follow", "--json")

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[:3] == events
    assert lines[3]["undecodable"].startswith("not JSON")
    assert (lines[3]["topic"], lines[3]["offset"]) == (topic, 3)

    limited = run(bootstrap, "tail", topic, "--from-beginning", "--no-follow", "--limit", "2")
    assert limited.exit_code == 0
    pretty = limited.stdout.splitlines()
    assert len(pretty) == 2
    assert "access.recorded" in pretty[0]
    assert "org-tail-0" in pretty[0]
    assert "user_country=US" in pretty[0]

    from_end = run(bootstrap, "tail", topic, "--no-follow")
    assert from_end.exit_code == 0
    assert from_end.stdout == ""
    assert "no new events" in from_end.stderr


def test_tail_accepts_short_names_and_refuses_unknown_ones(bootstrap: str) -> None:
    key = f"org-{uuid.uuid4().hex[:8]}"
    event = access_event(key)
    asyncio.run(_produce(bootstrap, topics.ACCESS, json.dumps(event).encode(), key.encode(), []))

    result = run(bootstrap, "tail", "access", "--from-beginning", "--no-follow", "--json")

    assert result.exit_code == 0, result.output
    assert event in [json.loads(line) for line in result.stdout.splitlines()]
    unknown = run(bootstrap, "tail", "acess", "--no-follow")
    assert unknown.exit_code == 1
    assert "unknown topic 'acess'" in unknown.stderr
    missing = run(bootstrap, "tail", "carveout.nothing", "--no-follow")
    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr


async def test_tail_follows_new_events(bootstrap: str) -> None:
    topic = await asyncio.to_thread(new_topic, bootstrap)
    seen: list[str] = []
    arrived = asyncio.Event()

    def emit(line: str) -> None:
        seen.append(line)
        arrived.set()

    first, second = access_event("org-follow-1"), access_event("org-follow-2")
    await _produce(bootstrap, topic, json.dumps(first).encode(), b"org-follow-1", [])
    following = asyncio.create_task(
        tail.tail(bootstrap, topic, emit, as_json=True, from_beginning=True, limit=2)
    )
    async with asyncio.timeout(10):
        await arrived.wait()  # the first event shows the tail is reading
        await _produce(bootstrap, topic, json.dumps(second).encode(), b"org-follow-2", [])
        assert await following == 2
    assert [json.loads(line) for line in seen] == [first, second]
