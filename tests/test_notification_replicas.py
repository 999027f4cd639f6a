"""Two notification replicas (two processes) on one PostgreSQL database and one consumer
group, a real broker and one real webhook receiver: each notification is attempted once
while both run; a replica killed in the middle of a delivery is taken over when its lease
runs out, not before; one accepted delivery per (event, subscription), and each outcome
event published once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlmodel import Session, col, select

from carveout_contracts import codec, topics
from carveout_notification.store import NotificationRecord, NotificationStore
from carveout_ops.broker import ensure_topics, free_port
from carveout_runtime.stores import make_engine

from .kafka import produce
from .receivers import WebhookReceiver
from .system import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

LEASE = 1.5
"""The replicas' lease (seconds): short, so that a takeover comes soon."""
REGULATOR = {"Authorization": "Bearer r"}
GOLDEN = Path(__file__).resolve().parents[1] / "contracts" / "golden"


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def checks(self) -> dict[str, str]:
        """What the replica's ``/readyz`` says of each check (nothing while it starts)."""
        if self.process.poll() is not None:
            raise AssertionError(f"replica {self.name} exited:\n{self.log.read_text()}")
        try:
            checks: dict[str, str] = httpx.get(self.url + "/readyz", timeout=1).json()["checks"]
        except (httpx.HTTPError, ValueError):
            return {}
        return checks


def serving(replicas: dict[str, Replica]) -> bool:
    """Both replicas run their store and deliveries, and the group has given every consumed
    topic to one of them (a replica with none of a topic's partitions is not ready)."""
    checks = [r.checks() for r in replicas.values()]
    return all(c.get("store") == c.get("deliveries") == "ok" for c in checks) and all(
        any(c.get(topic) == "ok" for c in checks) for topic in ("grants", "breaches")
    )


@pytest.fixture
def replicas(
    tmp_path: Path, postgres_url: str, kafka_bootstrap: str
) -> Iterator[dict[str, Replica]]:
    asyncio.run(ensure_topics(kafka_bootstrap))
    NotificationStore(make_engine(postgres_url)).engine.dispose()  # the schema, made once
    group = f"carveout-notification-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARVEOUT_")}
    env.update(
        CARVEOUT_KAFKA_BOOTSTRAP=kafka_bootstrap,
        CARVEOUT_SESSION_TIMEOUT_MS="3000",
        CARVEOUT_REGULATOR_TOKEN="r",
        CARVEOUT_GATEWAY_TOKEN="g",
        CARVEOUT_AUDITOR_TOKEN="a",
        CARVEOUT_NOTIFICATION_DATABASE_URL=postgres_url,
        CARVEOUT_NOTIFICATION_GROUP_ID=group,
        CARVEOUT_NOTIFICATION_LEASE_SECONDS=str(LEASE),
        CARVEOUT_NOTIFICATION_DELIVERY_POLL_SECONDS="0.1",
        CARVEOUT_NOTIFICATION_WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8",
    )
    started: dict[str, Replica] = {}
    try:
        for name in ("a", "b"):
            port = free_port()
            log = tmp_path / f"notification-{name}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "carveout_notification", "serve"],
                    env={
                        **env,
                        "CARVEOUT_NOTIFICATION_PORT": str(port),
                        "CARVEOUT_NOTIFICATION_REPLICA_ID": name,
                    },
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started[name] = Replica(name, port, process, log)
        wait_for(lambda: serving(started), 90, "both replicas serving", every=0.2)
        yield started
    finally:
        for replica in started.values():
            if replica.process.poll() is None:
                replica.process.terminate()
                replica.process.wait(20)


def breach() -> bytes:
    """A breach of an event of its own (a grantee nobody else's test uses)."""
    event: dict[str, Any] = json.loads((GOLDEN / "condition.breached.v1.json").read_bytes())
    event["event_id"] = str(uuid.uuid4())
    event["data"]["breach_id"] = f"brc_{uuid.uuid4().hex[:16]}"
    event["data"]["grantee_id"] = "org-notification-replicas"
    return json.dumps(event).encode()


def rows(url: str, subscription_id: str) -> list[NotificationRecord]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            query = select(NotificationRecord).where(
                col(NotificationRecord.subscription_id) == subscription_id
            )
            return list(session.exec(query))
    finally:
        engine.dispose()


async def outcomes_on_the_log(bootstrap: str, subscription_id: str) -> Counter[str]:
    """How many times each notification of the subscription was announced, and how."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [
            TopicPartition(topics.NOTIFICATIONS, p)
            for p in consumer.partitions_for_topic(topics.NOTIFICATIONS) or {0}
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        seen: Counter[str] = Counter()
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    event = codec.decode(topics.NOTIFICATIONS, record.value)
                    if event.data.subscription_id == subscription_id:
                        seen[f"{event.type} {event.data.notification_id}"] += 1
        return seen
    finally:
        await consumer.stop()


def test_two_replicas_deliver_each_notification_once_and_take_over_a_killed_one(
    replicas: dict[str, Replica], postgres_url: str, kafka_bootstrap: str
) -> None:
    receiver = WebhookReceiver(failures=0)
    receiver.start()
    try:
        subscribed = httpx.post(
            replicas["a"].url + "/v1/subscriptions",
            headers=REGULATOR,
            json={
                "channel": "webhook",
                "address": receiver.url,
                "event_types": ["condition.breached"],
            },
            timeout=10,
        )
        assert subscribed.status_code == 201, subscribed.text
        subscription_id = subscribed.json()["subscription_id"]

        # Both replicas run: every notification is attempted once, accepted once.
        key = "grt_notification_replicas"
        asyncio.run(produce(kafka_bootstrap, topics.BREACHES, [breach() for _ in range(20)], key))

        def all_announced() -> bool:
            found = rows(postgres_url, subscription_id)
            return len(found) == 20 and all(n.announced_at for n in found)

        wait_for(all_announced, 30, "20 notifications delivered and announced")
        assert len(receiver.accepted()) == 20
        assert set(receiver.attempts().values()) == {1}  # no notification attempted twice

        # One more, held by the receiver: its replica renews the lease past its length
        # and keeps it; killed, it is taken over once the lease runs out.
        receiver.hold = threading.Event()
        asyncio.run(produce(kafka_bootstrap, topics.BREACHES, [breach()], key))
        [held] = wait_for(lambda: receiver.held, 20, "an attempt held by the receiver")
        [claimed] = [n for n in rows(postgres_url, subscription_id) if n.notification_id == held]
        first_lease = claimed.lease_until
        assert claimed.claimed_by in replicas and first_lease is not None
        holder = replicas[claimed.claimed_by]
        held_since = time.monotonic()

        def renewed() -> bool:
            [now] = [n for n in rows(postgres_url, subscription_id) if n.notification_id == held]
            assert now.claimed_by == holder.name  # never taken over while renewed
            return bool(now.lease_until and now.lease_until > first_lease)

        wait_for(renewed, LEASE * 2, "the holder renewing its lease")
        wait_for(lambda: time.monotonic() - held_since > LEASE, LEASE * 2, "a lease's time")
        assert receiver.attempts()[held] == 1  # the other replica did not start it

        holder.process.send_signal(signal.SIGKILL)
        holder.process.wait(10)
        receiver.hold.set()  # its attempt ends unanswered: the sender is gone
        wait_for(lambda: receiver.accepted()[held], LEASE * 4 + 10, "the takeover delivered")
        survivor = next(r for r in replicas.values() if r is not holder)

        def finished() -> bool:
            [n] = [n for n in rows(postgres_url, subscription_id) if n.notification_id == held]
            return n.status == "delivered" and n.announced_at is not None

        wait_for(finished, 20, "the takeover recorded and announced")
        assert receiver.accepted()[held] == 1 and receiver.attempts()[held] == 2
        survivor.process.send_signal(signal.SIGINT)  # stopped the ordinary way: all sent
        assert survivor.process.wait(20) in (0, -signal.SIGINT)
    finally:
        receiver.stop()

    # One accepted delivery per (event, subscription), and one outcome event each.
    assert set(receiver.accepted().values()) == {1} and len(receiver.accepted()) == 21
    announced = asyncio.run(outcomes_on_the_log(kafka_bootstrap, subscription_id))
    assert set(announced.values()) == {1}, announced
    assert {k.split()[1] for k in announced} == set(receiver.accepted())
    assert {k.split()[0] for k in announced} == {"notification.delivered"}
