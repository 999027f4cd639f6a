"""The grant service in one process: FastStream's in-memory Kafka broker and an ASGI client.

The app's own lifespan cannot run here (it measures the grants log with a real Kafka
client), so the harness does what the lifespan does with the test broker: it connects the
broker and runs the outbox relay as a task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from httpx import ASGITransport, AsyncClient

from carveout_contracts import topics
from carveout_grant.app import create_app
from carveout_grant.clock import Clock, system_clock
from carveout_grant.deps import GrantContext
from carveout_grant.service import GrantService
from carveout_grant.settings import GrantSettings
from carveout_runtime.composition import context_of

REGULATOR = {"Authorization": "Bearer r"}
GATEWAY = {"Authorization": "Bearer g"}
AUDITOR = {"Authorization": "Bearer a"}


@dataclass
class Record:
    """One message as it reached the grants topic."""

    value: bytes
    key: bytes | None
    headers: dict[str, str]


@dataclass
class GrantHarness:
    app: FastAPI
    broker: KafkaBroker
    client: AsyncClient
    published: list[Record] = field(default_factory=list)

    @property
    def service(self) -> GrantService:
        return context_of(self.app, GrantContext).service


def make_settings(tmp_path: Path, **overrides: Any) -> GrantSettings:
    return GrantSettings(
        database_url=f"sqlite:///{tmp_path}/grant.db",
        regulator_token="r",
        gateway_token="g",
        auditor_token="a",
        kafka_bootstrap="localhost:1",
        **overrides,
    )


async def _raw_body(message: Any) -> bytes:
    return bytes(message.body)


Starter = Callable[..., AbstractAsyncContextManager[GrantHarness]]


@pytest.fixture
def start_grant(tmp_path: Path) -> Starter:
    """Start the grant service; ``run_relay=False`` leaves the outbox unrelayed, and
    ``clock`` is the time its rules read."""

    @asynccontextmanager
    async def start(
        *, run_relay: bool = True, clock: Clock = system_clock, **overrides: Any
    ) -> AsyncIterator[GrantHarness]:
        broker = KafkaBroker("localhost:1")
        app = create_app(make_settings(tmp_path, **overrides), broker, clock)
        published: list[Record] = []

        @broker.subscriber(topics.GRANTS, decoder=_raw_body)
        async def on_grant_event(body: bytes, message: KafkaMessage) -> None:
            raw = message.raw_message
            headers = {k: v.decode() for k, v in raw.headers}  # type: ignore[union-attr]
            published.append(Record(body, raw.key, headers))  # type: ignore[union-attr]

        async with TestKafkaBroker(broker) as br:
            relay = (
                asyncio.create_task(context_of(app, GrantContext).service.relay.run())
                if run_relay
                else None
            )
            try:
                transport = ASGITransport(app=app)
                async with AsyncClient(transport=transport, base_url="http://grant") as client:
                    yield GrantHarness(app, br, client, published)
            finally:
                if relay is not None:
                    relay.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await relay

    return start


@pytest.fixture
async def grant_service(start_grant: Starter) -> AsyncIterator[GrantHarness]:
    async with start_grant() as harness:
        yield harness


@pytest.fixture
def demo_body() -> dict[str, Any]:
    """The grant of DESIGN section 4, valid from yesterday for a year (so it is active now)."""
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "carveout_id": "co-mythos-2026",
        "model_id": "mythos-preview",
        "grantee": {
            "id": "org-netsec",
            "name": "Example Network Security Inc.",
            "contacts": [{"kind": "webhook", "address": "https://hooks.example.com/carveout"}],
        },
        "valid_from": (now - timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        "valid_until": (now + timedelta(days=365)).isoformat().replace("+00:00", "Z"),
        "conditions": [
            {
                "id": "countries",
                "kind": "user_countries",
                "allow": ["US", "GB", "IN"],
                "severity": "critical",
            },
            {
                "id": "embargo",
                "kind": "user_countries",
                "deny": ["KP", "IR", "CU", "SY", "RU"],
                "severity": "critical",
            },
            {
                "id": "regions",
                "kind": "deployment_regions",
                "allow": ["us-east", "us-west"],
                "severity": "critical",
            },
            {
                "id": "purpose",
                "kind": "purposes",
                "allow": ["vulnerability-scanning"],
                "severity": "warning",
            },
            {
                "id": "safeguards",
                "kind": "safeguards",
                "require": ["access_logging", "mfa"],
                "severity": "critical",
            },
            {
                "id": "cap",
                "kind": "usage_cap",
                "units": 1000000,
                "window": "day",
                "severity": "warning",
            },
        ],
        "breach_policy": {
            "suspend_after_critical": None,
            "revoke_after_critical": 3,
            "window_seconds": 3600,
        },
    }
