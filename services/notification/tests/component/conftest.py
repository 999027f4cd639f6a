"""The notification service in one process: FastStream's in-memory Kafka and an ASGI client.

Subscribers are registered on the broker by ``create_app``; ``TestKafkaBroker`` delivers
each published message to them before ``publish`` returns, so no test needs to wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from httpx import ASGITransport, AsyncClient

from carveout_contracts import MessageDeadLettered, decode, topics
from carveout_notification.app import create_app
from carveout_notification.deps import NotificationContext
from carveout_notification.settings import NotificationSettings
from carveout_runtime.composition import context_of

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
AUDITOR = {"Authorization": "Bearer a"}


@dataclass
class DeadLetter:
    """One message as it reached the dead-letter topic."""

    key: bytes | None
    headers: dict[str, str]
    event: MessageDeadLettered


@dataclass
class NotificationHarness:
    app: FastAPI
    broker: KafkaBroker
    client: AsyncClient
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def context(self) -> NotificationContext:
        """The service's store, settings and consumers, as ``create_app`` made them."""
        return context_of(self.app, NotificationContext)

    async def publish(
        self,
        value: bytes,
        key: str = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM",
        traceparent: str | None = None,
    ) -> None:
        headers = {"content-type": "application/json"}
        if traceparent:
            headers["traceparent"] = traceparent
        await self.broker.publish(value, topics.GRANTS, key=key.encode(), headers=headers)


def golden_bytes(event_type: str) -> bytes:
    return (GOLDEN / f"{event_type}.v1.json").read_bytes()


async def _raw_body(message: Any) -> bytes:
    return bytes(message.body)


Starter = Callable[..., AbstractAsyncContextManager[NotificationHarness]]


@pytest.fixture
def start_notification(tmp_path: Path) -> Starter:
    """Start notification on a store in ``tmp_path``; start it again to see a restart."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[NotificationHarness]:
        settings = NotificationSettings(
            database_url=f"sqlite:///{tmp_path}/notification.db",
            regulator_token="r",
            gateway_token="g",
            auditor_token="a",
            kafka_bootstrap="localhost:1",
            **overrides,
        )
        broker = KafkaBroker("localhost:1")
        app = create_app(settings, broker)
        dead: list[DeadLetter] = []

        @broker.subscriber(topics.DEADLETTER, decoder=_raw_body)
        async def on_dead_letter(body: bytes, message: KafkaMessage) -> None:
            raw: Any = message.raw_message
            headers = {name: value.decode() for name, value in raw.headers}
            dead.append(DeadLetter(raw.key, headers, decode(topics.DEADLETTER, body)))

        async with TestKafkaBroker(broker) as br:
            transport = ASGITransport(app=app)
            async with AsyncClient(transport=transport, base_url="http://notification") as client:
                yield NotificationHarness(app, br, client, dead)

    return start


@pytest.fixture
async def notification(start_notification: Starter) -> AsyncIterator[NotificationHarness]:
    async with start_notification() as harness:
        yield harness
