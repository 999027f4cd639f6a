"""Kafka and PostgreSQL in containers (testcontainers), as the production stack runs them.

Each test starts its own container and is skipped, saying why, when no Docker engine
answers. The whole suite can run on such containers instead with
``CARVEOUT_TEST_CONTAINERS=1`` (see the root conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from carveout_contracts import codec, topics
from carveout_enforcement.domain import apply
from carveout_enforcement.store import EnforcementStore
from carveout_ops.broker import ensure_topics, wait_for_broker
from carveout_runtime.stores import make_engine

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "contracts" / "golden"


@pytest.fixture(scope="module")
def kafka(make_kafka_container: Any) -> Iterator[str]:
    """A single-node Kafka (KRaft) container; its bootstrap servers."""
    with make_kafka_container() as container:
        yield container.get_bootstrap_server()


@pytest.fixture(scope="module")
def postgres(make_postgres_container: Any) -> Iterator[str]:
    """A PostgreSQL container; its URL."""
    with make_postgres_container() as container:
        yield container.get_connection_url()


async def test_an_event_round_trips_through_a_kafka_container(kafka: str) -> None:
    await wait_for_broker(kafka)
    created = await ensure_topics(kafka)
    assert set(created) <= set(topics.ALL_TOPICS)
    event = codec.decode(topics.GRANTS, (GOLDEN / "grant.issued.v1.json").read_bytes())
    traceparent = codec.new_traceparent()

    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.GRANTS,
            codec.encode_value(event),
            key=event.key.encode(),
            headers=codec.headers(traceparent),
        )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topics.GRANTS,
        bootstrap_servers=kafka,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()

    assert record.key == event.key.encode()
    assert codec.decode(topics.GRANTS, record.value) == event
    assert dict(record.headers)["traceparent"] == traceparent.encode()


def test_a_service_store_on_a_postgres_container(postgres: str) -> None:
    event = codec.decode(topics.GRANTS, (GOLDEN / "grant.issued.v1.json").read_bytes())
    view = apply(None, event, event.data.grant_id)
    assert view is not None
    store = EnforcementStore(make_engine(postgres))
    store.ping()
    store.save_grants(
        [view], event_id=str(event.event_id), topic=topics.GRANTS, at=datetime.now(UTC)
    )

    reopened = EnforcementStore(make_engine(postgres))
    assert reopened.is_processed(str(event.event_id))
    assert list(reopened.load_grants()) == [view]


def test_without_docker_the_container_tests_are_skipped_quickly_and_say_why() -> None:
    """Runs everywhere: the tests above, with a Docker endpoint that cannot answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARVEOUT_")}
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            __file__,
            "-k",
            "kafka_container or postgres_container",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "--durations=0",
            "--durations-min=0",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 skipped" in result.stdout, result.stdout
    assert "Docker engine not available" in result.stdout, result.stdout
    setups = [
        float(line.split("s", 1)[0])
        for line in result.stdout.splitlines()
        if " setup " in line and line[:1].isdigit()
    ]
    assert setups and max(setups) < 1.0, result.stdout
    assert time.monotonic() - started < 60
