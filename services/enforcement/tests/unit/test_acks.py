"""Acknowledgements (DESIGN §12): one per grant version the projection applies, queued
without ever holding the grants consumer up, published by a task of their own; and a
heartbeat with the grants positions applied."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from carveout_contracts import EnforcementApplied, EnforcementHeartbeat, codec, topics
from carveout_enforcement.acks import Acknowledger, ack_event_id, default_enforcer_id
from carveout_enforcement.handlers.grants import GrantIndex, GrantProjector
from carveout_enforcement.store import EnforcementStore
from carveout_runtime.inbound import Inbound
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
T0 = datetime(2026, 9, 10, 13, 5, tzinfo=UTC)


def golden(event_type: str) -> Any:
    raw = (GOLDEN / f"{event_type}.v1.json").read_text()
    return codec.decode(topics.GRANTS, json.dumps(json.loads(raw)).encode())


class Broker:
    """Records what is published; ``down`` makes every publish fail as an absent broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Any, str | None]] = []
        self.down = False
        self.arrived = asyncio.Event()
        self.refused = asyncio.Event()

    async def publish(self, value: bytes, topic: str, key: bytes, trace: str | None) -> None:
        if self.down:
            self.refused.set()
            raise ConnectionError("no broker")
        self.sent.append((topic, key, codec.decode(topics.ACKS, value), trace))
        self.arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.sent) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def positions() -> dict[int, int]:
    return {0: 7}


def acknowledger(broker: Broker, queue_max: int = 16) -> Acknowledger:
    return Acknowledger("enf-a", positions, broker.publish, queue_max=queue_max, clock=lambda: T0)


class FlakyStore(EnforcementStore):
    failures = 0

    def save_grants(self, views: Any, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("database is locked")
        super().save_grants(views, **kwargs)


def projector(acks: Acknowledger, tmp_path: Path) -> GrantProjector:
    store = FlakyStore(make_engine(f"sqlite:///{tmp_path / 'enforcement.db'}"))
    return GrantProjector(store, GrantIndex(), 1, on_versions=acks.applied)


async def project(projection: GrantProjector, *event_types: str) -> None:
    for event_type in event_types:
        await projection(golden(event_type), Inbound.at(None))


async def test_each_version_applied_is_acknowledged_once(tmp_path: Path) -> None:
    broker = Broker()
    acks = acknowledger(broker)
    issued, suspended = golden("grant.issued"), golden("grant.suspended")
    projection = projector(acks, tmp_path)
    await project(projection, "grant.issued")
    # The suspension's store write fails: memory has it, so it is acknowledged; redelivered,
    # it changes memory no further and is not acknowledged again.
    assert isinstance(projection.store, FlakyStore)
    projection.store.failures = 1
    with pytest.raises(OSError, match="database is locked"):
        await project(projection, "grant.suspended")
    await project(projection, "grant.suspended")
    publishing = asyncio.create_task(acks.publish_acks())
    try:
        await broker.wait_for(2)
    finally:
        publishing.cancel()
    events = [event for _, _, event, _ in broker.sent]
    assert all(isinstance(e, EnforcementApplied) for e in events)
    assert [(e.data.grant_id, e.data.version, e.data.grant_event_id) for e in events] == [
        (issued.data.grant_id, 1, issued.event_id),
        (suspended.data.grant_id, suspended.data.version, suspended.event_id),
    ]
    assert {(topic, key) for topic, key, _, _ in broker.sent} == {
        (topics.ACKS, issued.data.grant_id.encode())
    }
    assert events[0].data.enforcer_id == "enf-a"
    assert events[0].data.applied_at == T0
    assert events[0].event_id == ack_event_id("enf-a", issued.data.grant_id, 1)


async def test_a_full_queue_drops_acks_without_holding_the_consumer_up(tmp_path: Path) -> None:
    broker = Broker()
    acks = acknowledger(broker, queue_max=1)
    # no task publishes: the queue fills at the first ack, the second is dropped at once
    projection = projector(acks, tmp_path)
    await asyncio.wait_for(project(projection, "grant.issued", "grant.suspended"), 5)
    assert acks.dropped == 1


async def test_a_broker_outage_drops_the_ack_and_publishing_goes_on(tmp_path: Path) -> None:
    broker = Broker()
    broker.down = True
    acks = acknowledger(broker)
    projection = projector(acks, tmp_path)
    await project(projection, "grant.issued")
    publishing = asyncio.create_task(acks.publish_acks())
    try:
        async with asyncio.timeout(5):
            await broker.refused.wait()
        broker.down = False
        await project(projection, "grant.suspended")
        await broker.wait_for(1)
        assert acks.dropped == 1
        assert not publishing.done()  # still publishing
    finally:
        publishing.cancel()
    [(_, _, event, _)] = broker.sent
    assert event.data.version == golden("grant.suspended").data.version


async def test_a_heartbeat_carries_the_grants_positions_applied() -> None:
    broker = Broker()
    await acknowledger(broker).beat()
    [(topic, key, event, _)] = broker.sent
    assert isinstance(event, EnforcementHeartbeat)
    assert (topic, key) == (topics.ACKS, b"enf-a")
    assert (event.data.enforcer_id, event.data.grants_positions, event.data.at) == (
        "enf-a",
        {0: 7},
        T0,
    )


async def test_a_failed_heartbeat_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    broker = Broker()
    broker.down = True
    await acknowledger(broker).beat()
    assert "heartbeat failed" in caplog.text


def test_two_replicas_on_one_machine_have_different_ids() -> None:
    assert default_enforcer_id(8082, "host-a") == "host-a:8082"
    assert default_enforcer_id(8082, "host-a") != default_enforcer_id(8092, "host-a")
    assert len(default_enforcer_id(8082, "h" * 500)) == 200
