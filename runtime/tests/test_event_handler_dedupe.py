"""Every consumer skips an event processed before: asked of the store, or known in memory
(the newest ``remembered`` ids) once processed or found processed, so a record delivered
again is skipped without a query; memory stays bounded."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carveout_contracts import topics
from carveout_runtime.consumers import EventHandler
from carveout_runtime.inbound import Inbound

GOLDEN = Path(__file__).resolve().parents[2] / "contracts" / "golden"


@dataclass
class Record:
    value: bytes
    topic: str = topics.GRANTS
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int = 0
    offset: int = 0
    timestamp: int = 0
    key: bytes | None = None


def issued() -> bytes:
    raw = json.loads((GOLDEN / "grant.issued.v1.json").read_bytes())
    raw["event_id"] = str(uuid.uuid4())
    return json.dumps(raw).encode()


class Consumer:
    def __init__(self, in_store: set[str], remembered: int = 100) -> None:
        self.in_store = in_store
        self.asked: list[str] = []
        self.processed: list[str] = []
        self.handler = EventHandler(
            topics.GRANTS,
            is_processed=self.is_processed,
            process=self.process,
            dead_letter=self.dead_letter,
            retry_attempts=1,
            remembered=remembered,
        )

    def is_processed(self, event_id: str) -> bool:
        self.asked.append(event_id)
        return event_id in self.in_store

    async def process(self, event: Any, _inbound: Inbound) -> None:
        self.processed.append(str(event.event_id))
        self.in_store.add(str(event.event_id))

    async def dead_letter(self, *_: Any) -> None:
        raise AssertionError("nothing here is dead-lettered")

    async def deliver(self, value: bytes) -> None:
        await self.handler.handle(value, Record(value))


def event_id(value: bytes) -> str:
    return str(json.loads(value)["event_id"])


async def test_an_event_processed_here_is_skipped_again_without_asking_the_store() -> None:
    consumer, value = Consumer(set()), issued()
    await consumer.deliver(value)
    await consumer.deliver(value)
    await consumer.deliver(value)

    assert consumer.processed == [event_id(value)]
    assert consumer.asked == [event_id(value)]  # once, before it was processed
    assert (consumer.handler.processed, consumer.handler.duplicates) == (1, 2)


async def test_an_event_the_store_has_is_asked_once_then_known() -> None:
    value = issued()
    consumer = Consumer({event_id(value)})  # processed by another replica
    await consumer.deliver(value)
    await consumer.deliver(value)

    assert consumer.processed == []
    assert consumer.asked == [event_id(value)]


async def test_only_the_newest_ids_are_kept() -> None:
    consumer = Consumer(set(), remembered=2)
    first, second, third = issued(), issued(), issued()
    for value in (first, second, third):
        await consumer.deliver(value)
    consumer.asked.clear()

    await consumer.deliver(third)
    await consumer.deliver(first)  # forgotten: asked of the store, which has it

    assert consumer.asked == [event_id(first)]
    assert consumer.processed == [event_id(v) for v in (first, second, third)]
