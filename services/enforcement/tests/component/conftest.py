"""The enforcement service in one process: FastStream's in-memory Kafka broker and an ASGI client.

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
from sqlalchemy.exc import OperationalError

from carveout_contracts import MessageDeadLettered, decode, topics
from carveout_enforcement.app import create_app
from carveout_enforcement.context import EnforcementContext
from carveout_enforcement.settings import EnforcementSettings
from carveout_runtime import retries
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
class EnforcementHarness:
    app: FastAPI
    broker: KafkaBroker
    client: AsyncClient
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def context(self) -> EnforcementContext:
        return context_of(self.app, EnforcementContext)

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


def settings_for(tmp_path: Path, **overrides: Any) -> EnforcementSettings:
    """Enforcement on a store in ``tmp_path``, with the tests' tokens and no broker to reach."""
    return EnforcementSettings(
        database_url=f"sqlite:///{tmp_path}/enforcement.db",
        regulator_token="r",
        gateway_token="g",
        auditor_token="a",
        kafka_bootstrap="localhost:1",
        **overrides,
    )


def failing(real: Callable[..., Any], failures: int) -> Callable[..., Any]:
    """``real``, failing like a database that is down for its first ``failures`` calls."""
    calls = {"n": 0}

    def call(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    return call


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff in milliseconds, so that many attempts take no time."""
    monkeypatch.setattr(retries, "RETRY_WAIT_INITIAL_S", 0.001)
    monkeypatch.setattr(retries, "RETRY_WAIT_MAX_S", 0.002)
    monkeypatch.setattr(retries, "RETRY_JITTER_S", 0.0)


Starter = Callable[..., AbstractAsyncContextManager[EnforcementHarness]]


@pytest.fixture
def start_enforcement(tmp_path: Path) -> Starter:
    """Start enforcement on a store in ``tmp_path``; start it again to see a restart."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[EnforcementHarness]:
        settings = settings_for(tmp_path, **overrides)
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
            async with AsyncClient(transport=transport, base_url="http://enforcement") as client:
                yield EnforcementHarness(app, br, client, dead)

    return start


@pytest.fixture
async def enforcement(start_enforcement: Starter) -> AsyncIterator[EnforcementHarness]:
    async with start_enforcement() as harness:
        yield harness
