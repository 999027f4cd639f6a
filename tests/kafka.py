"""Plain Kafka clients for tests: what any gateway or operator tool would use."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from carveout_contracts import codec
from carveout_runtime.event_signing import SIGNED_BY, EventSigning

KEYS_BY_BOOTSTRAP: dict[str, Path] = {}
"""The signing keys of the system on each broker (``carveout up`` makes them)."""


def signature(bootstrap: str, topic: str, value: bytes) -> list[tuple[str, bytes]]:
    """The headers that sign ``value`` as its topic's service would, with the keys of the
    system on ``bootstrap``: what a test that stands in for a service publishes with. A
    topic nobody signs, or a broker with no system, gets none."""
    keys = KEYS_BY_BOOTSTRAP.get(bootstrap)
    service = SIGNED_BY.get(topic)
    if keys is None or service is None:
        return []
    signed = EventSigning.of(service, keys, None).sign(value, {})
    return [(name, text.encode()) for name, text in signed.items()]


def access_event(
    grantee_id: str = "org-netsec",
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    fields = {
        "request_id": f"req_{uuid.uuid4().hex[:12]}",
        "grantee_id": grantee_id,
        "model_id": "mythos-preview",
        "user_id": "user-1",
        "user_country": "US",
        "deployment_region": "us-east",
        "purpose": "vulnerability-scanning",
        "safeguards": ["access_logging", "mfa"],
        "units": 100,
        "gateway_id": "gw-test",
    }
    fields.update(data)
    moment = occurred_at or datetime.now(UTC)
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "type": "access.recorded",
        "version": 1,
        "occurred_at": moment.isoformat().replace("+00:00", "Z"),
        "producer": "gw-test",
        "key": grantee_id,
        "data": fields,
    }


async def produce(
    bootstrap: str, topic: str, values: list[bytes | dict[str, Any]], key: str
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=2)
    await producer.start()
    try:
        pending = []
        for value in values:
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            headers = signature(bootstrap, topic, raw)
            pending.append(await producer.send(topic, raw, key=key.encode(), headers=headers))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


class TopicReader:
    """Reads a topic from its current end (or beginning), decoding each event."""

    def __init__(self, bootstrap: str, topic: str, from_beginning: bool = False) -> None:
        self.bootstrap, self.topic, self.from_beginning = bootstrap, topic, from_beginning
        self.consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        from aiokafka import TopicPartition

        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
        )
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.topic) or {0}
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self.consumer.assign(tps)
        if self.from_beginning:
            await self.consumer.seek_to_beginning(*tps)
        else:
            await self.consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the position now, before anything is produced
                await self.consumer.position(tp)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.consumer is not None
        await self.consumer.stop()

    async def read(self, count: int, within: float) -> list[Any]:
        """At least ``count`` events, or all there were when ``within`` seconds ran out."""
        assert self.consumer is not None
        found: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(found) < count and loop.time() < deadline:
            batch = await self.consumer.getmany(timeout_ms=50)
            for records in batch.values():
                found += [codec.decode(self.topic, r.value) for r in records]
        return found

    async def settle(self, within: float) -> list[Any]:
        """Everything that arrives in the next ``within`` seconds."""
        return await self.read(10**9, within)
