"""A batch left unrecorded to its partitions' new owner is not committed: the consumer goes
back to it (on the real broker). Committed, it would be skipped by the new owner whenever
the broker takes the commit of a member it no longer counts (Tansu does)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from carveout_contracts import topics
from carveout_enforcement.handlers import access
from carveout_ops.broker import EmbeddedBroker, ensure_topics, free_port, wait_for_broker
from carveout_runtime.log_restarts import HandledOffsets

from .conftest import settings_for

pytestmark = pytest.mark.broker


@dataclass
class Pipeline:
    """Leaves the first batch to a new owner, records the ones after."""

    handled: HandledOffsets = field(default_factory=HandledOffsets)
    batches: list[set[tuple[int, int]]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def process(self, records: Any) -> bool:
        self.batches.append({(r.partition, r.offset) for r in records})
        if len(self.batches) > 1:
            self.done.set()
        return len(self.batches) > 1


@pytest.fixture
async def kafka_bootstrap() -> AsyncIterator[str]:
    """A broker of this test's own: the records it leaves on ``carveout.access`` are no
    access events, and no other test is to read them."""
    if os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP"):
        pytest.skip("leaves records on carveout.access: needs a broker of its own")
    broker = EmbeddedBroker(port=free_port())
    broker.start()
    try:
        await wait_for_broker(broker.bootstrap)
        await ensure_topics(broker.bootstrap)
        yield broker.bootstrap
    finally:
        broker.stop()


async def test_a_batch_left_to_the_new_owner_is_read_again_not_committed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic_name = topics.ACCESS
    group = f"left-{uuid.uuid4().hex[:8]}"
    settings = settings_for(tmp_path).model_copy(
        update={
            "kafka_bootstrap": kafka_bootstrap,
            "access_group_id": group,
            "session_timeout_ms": 3000,
        }
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    sent = {await producer.send_and_wait(topic_name, b"{}", partition=0) for _ in range(3)}
    await producer.stop()

    broker = KafkaBroker(kafka_bootstrap)
    pipeline = Pipeline()
    access.subscribe(broker, pipeline, settings)  # type: ignore[arg-type]
    async with broker:
        await broker.start()
        await asyncio.wait_for(pipeline.done.wait(), 30)

    first, again = pipeline.batches[0], pipeline.batches[1]
    assert {(r.partition, r.offset) for r in sent} <= first
    assert first <= again, "the batch left to the new owner is read again, whole"
