"""Access events as a gateway sends them: one at a time, or generated load at a given rate."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from carveout_contracts import topics


@dataclass
class AccessTemplate:
    """The fields of the ``access.recorded`` data a gateway fills in."""

    grantee_id: str = "org-netsec"
    model_id: str = "mythos-preview"
    user_country: str = "US"
    deployment_region: str = "us-east"
    purpose: str = "vulnerability-scanning"
    safeguards: list[str] = field(default_factory=lambda: ["access_logging", "mfa"])
    units: int = 100
    user_id: str = "user-1"
    gateway_id: str = "gw-cli"
    grant_id: str | None = None

    def event(self, occurred_at: datetime | None = None, **changes: Any) -> dict[str, Any]:
        data = {
            "request_id": f"req_{uuid.uuid4().hex[:16]}",
            "grantee_id": self.grantee_id,
            "model_id": self.model_id,
            "user_id": self.user_id,
            "user_country": self.user_country,
            "deployment_region": self.deployment_region,
            "purpose": self.purpose,
            "safeguards": list(self.safeguards),
            "units": self.units,
            "gateway_id": self.gateway_id,
        }
        if self.grant_id:
            data["grant_id"] = self.grant_id
        data.update(changes)
        moment = occurred_at or datetime.now(UTC)
        return {
            "event_id": str(uuid.uuid4()),
            "type": "access.recorded",
            "version": 1,
            "occurred_at": moment.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "producer": self.gateway_id,
            "key": data["grantee_id"],
            "data": data,
        }


def scanning_traffic(
    template: AccessTemplate,
    count: int,
    start: datetime | None = None,
    span: timedelta | None = None,
) -> Iterator[dict[str, Any]]:
    """A gateway's ordinary traffic: many users scanning code, spread over ``span``."""
    rng = random.Random(7)
    begin = start or datetime.now(UTC)
    step = (span or timedelta(0)) / max(count, 1)
    users = [f"user-{n}" for n in range(50)]
    for n in range(count):
        yield template.event(
            begin + step * n,
            user_id=rng.choice(users),
            units=rng.randint(10, 200),
            deployment_region=rng.choice(["us-east", "us-west"]),
        )


def fast_copies(template: dict[str, Any], count: int) -> Iterator[bytes]:
    """``count`` serialised copies of one event, each with a fresh event id and request id.

    Cheap enough that a load generator can keep 10,000 events per second on one core.
    """
    marker_event, marker_request = "e" * 36, "r" * 20
    raw = orjson.dumps(
        {
            **template,
            "event_id": marker_event,
            "data": {**template["data"], "request_id": marker_request},
        }
    )
    head, rest = raw.split(marker_event.encode(), 1)
    middle, tail = rest.split(marker_request.encode(), 1)
    for _ in range(count):
        event_id = uuid.uuid4()
        yield b"".join(
            (head, str(event_id).encode(), middle, b"req_" + event_id.hex[:16].encode(), tail)
        )


async def publish(
    bootstrap: str,
    events: Iterator[dict[str, Any]] | Iterator[bytes],
    *,
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Produce events to ``carveout.access``, at most ``rate`` per second when given."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    sent = 0
    started = time.perf_counter()
    pending: list[asyncio.Future[Any]] = []
    try:
        for event in events:
            if isinstance(event, bytes):
                value, key = event, None
            else:
                value, key = orjson.dumps(event), event["key"].encode()
            pending.append(
                await producer.send(
                    topics.ACCESS,
                    value,
                    key=key or _key_of(value),
                    headers=[("content-type", b"application/json")],
                )
            )
            sent += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
                if on_sent:
                    on_sent(sent)
            if rate:
                ahead = sent / rate - (time.perf_counter() - started)
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
        if on_sent:
            on_sent(sent)
    finally:
        await producer.stop()
    return sent


def _key_of(value: bytes) -> bytes:
    """The ``key`` of a serialised event (the grantee id of an access)."""
    start = value.index(b'"key":"') + 7
    return value[start : value.index(b'"', start)]
