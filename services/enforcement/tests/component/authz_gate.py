"""The harness of the ``/v1/authz/`` tests: enforcement in one process, FastStream's
in-memory broker, the golden grant, and what the endpoint recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from httpx import ASGITransport, AsyncClient, Response

from carveout_contracts import AccessRecorded, codec, topics
from carveout_enforcement.app import create_app
from carveout_enforcement.context import EnforcementContext
from carveout_enforcement.decision.authz import AuthzEndpoint, authz_of
from carveout_runtime.auth import NamedToken, Role, TokenBook
from carveout_runtime.composition import context_of
from carveout_runtime.edge import edge_state

from .conftest import settings_for

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
NOW = datetime(2026, 9, 10, 11, 4, 59, tzinfo=UTC).timestamp()
ALLOWED = {
    "x-carveout-gateway-token": "g",
    "x-carveout-gateway": "gw-edge",
    "x-carveout-grantee": "org-netsec",
    "x-carveout-model": "mythos-preview",
    "x-carveout-user": "u-1842",
    "x-carveout-user-country": "GB",
    "x-carveout-region": "us-east",
    "x-carveout-purpose": "vulnerability-scanning",
    "x-carveout-safeguards": "access_logging, mfa",
    "x-carveout-units": "120",
}


@dataclass
class Gate:
    app: FastAPI
    broker: KafkaBroker
    client: AsyncClient
    recorded: list[bytes] = field(default_factory=list)

    @property
    def endpoint(self) -> AuthzEndpoint:
        return authz_of(self.app)

    async def ask(
        self, path: str = "/v1/authz/v1/chat/completions", method: str = "POST", **changes: Any
    ) -> Response:
        """``changes`` by header name with ``_`` for ``-``; ``None`` leaves one out."""
        given = {name.replace("_", "-"): value for name, value in changes.items()}
        headers = [
            (k.encode(), v.encode()) for k, v in {**ALLOWED, **given}.items() if v is not None
        ]
        return await self.client.request(method, path, headers=headers)

    async def published(self) -> list[AccessRecorded]:
        """What the endpoint recorded, once published (the background task's one step)."""
        assert await self.endpoint.recorder.drain() == 0
        events = [codec.decode(topics.ACCESS, value) for value in self.recorded]
        return [e for e in events if isinstance(e, AccessRecorded)]


Starter = Callable[..., AbstractAsyncContextManager[Gate]]


@asynccontextmanager
async def open_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> AsyncIterator[Gate]:
    """Enforcement in process with the golden grant, its clock at :data:`NOW`, fresh."""
    broker = KafkaBroker("localhost:1")
    app = create_app(settings_for(tmp_path, **overrides), broker)
    recorded: list[bytes] = []

    async def on_access(body: bytes) -> None:
        recorded.append(body)

    broker.subscriber(topics.ACCESS, decoder=_raw)(on_access)
    grants_log = context_of(app, EnforcementContext).grants_log
    monkeypatch.setattr(grants_log, "fresh", lambda bound_s: True)

    async def caught_up(within_s: float) -> bool:
        return True  # no real broker to ask for the grants log's end offsets

    monkeypatch.setattr(grants_log, "wait_caught_up", caught_up)
    authz_of(app).clock = lambda: NOW
    edge = edge_state(app)
    edge.tokens = TokenBook(edge.tokens.tokens, (NamedToken("gw-east", Role.GATEWAY, "east"),))
    async with TestKafkaBroker(broker) as test_broker:
        value = (GOLDEN / "grant.issued.v1.json").read_bytes()
        await test_broker.publish(value, topics.GRANTS, key=GRANT_ID.encode())
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://enforcement") as client:
            yield Gate(app, test_broker, client, recorded)


async def _raw(message: Any) -> bytes:
    return bytes(message.body)
