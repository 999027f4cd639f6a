"""Poison on the grants topic goes to the dead-letter topic; the next valid event is applied."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from carveout_contracts import codec, topics

from .kafka import signature
from .system import System, wait_for

pytestmark = pytest.mark.broker

GOLDEN = Path(__file__).resolve().parents[1] / "contracts" / "golden"


async def produce(bootstrap: str, values: list[bytes], key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value in values:
            # Signed with the grant service's key: the poison is in what it says.
            headers = signature(bootstrap, topics.GRANTS, value)
            await producer.send_and_wait(topics.GRANTS, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def dead_letters(bootstrap: str, at_least: int, within: float = 10) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topics.DEADLETTER,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(within):
            while len(found) < at_least:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    found += [codec.decode(topics.DEADLETTER, r.value) for r in records]
    finally:
        await consumer.stop()
    return found


def test_poison_is_dead_lettered_and_the_next_event_applied(system: System) -> None:
    issued = json.loads((GOLDEN / "grant.issued.v1.json").read_text())
    grant_id = f"grt_poison_{uuid.uuid4().hex[:8]}"
    issued["event_id"] = str(uuid.uuid4())
    issued["key"] = issued["data"]["grant_id"] = grant_id
    unknown = {**issued, "event_id": str(uuid.uuid4()), "type": "grant.teleported"}
    asyncio.run(
        produce(
            system.bootstrap,
            [b"{not json", json.dumps(unknown).encode(), json.dumps(issued).encode()],
            key=grant_id.encode(),
        )
    )

    seen = wait_for(
        lambda: system.call("enforcement", "GET", f"/v1/grants/{grant_id}").status_code == 200,
        5,
        "the valid event after the poison applied",
    )
    assert seen

    letters = asyncio.run(dead_letters(system.bootstrap, at_least=4))
    by_consumer: dict[str, list[str]] = {}
    for letter in letters:
        assert letter.data.source_topic == topics.GRANTS
        assert letter.data.source_offset is not None
        by_consumer.setdefault(letter.data.consumer, []).append(letter.data.reason)
    assert sorted(by_consumer["enforcement"]) == ["bad_json", "unknown_type"]
    assert sorted(by_consumer["notification"]) == ["bad_json", "unknown_type"]
    bad = next(x for x in letters if x.data.reason == "bad_json")
    assert codec.original_value(bad.data) == b"{not json"
