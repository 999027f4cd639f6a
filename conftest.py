"""Fixtures for every test: a real Kafka-protocol broker and a PostgreSQL database of our own.

Broker: ``CARVEOUT_KAFKA_BOOTSTRAP`` when set, else a testcontainers Kafka when Docker
answers, else the embedded Tansu broker on a free port. PostgreSQL: a database created
for this run on ``CARVEOUT_TEST_POSTGRES`` (default 127.0.0.1:5432) and dropped after it;
outside CI the PostgreSQL tests are skipped, with the reason, when no server answers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get(
    "CARVEOUT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    if _docker_answers():
        try:
            from testcontainers.kafka import KafkaContainer  # type: ignore[import-not-found]
        except ImportError:
            pass
        else:
            with KafkaContainer() as kafka:
                yield kafka.get_bootstrap_server()
            return
    from carveout_ops.broker import EmbeddedBroker, free_port, wait_for_broker

    broker = EmbeddedBroker(port=free_port())
    broker.start()
    try:
        asyncio.run(wait_for_broker(broker.bootstrap))
        yield broker.bootstrap
    finally:
        broker.stop()


def _postgres_connect(url: str) -> object:
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a PostgreSQL server that answers (skips, or fails in CI, otherwise)."""
    try:
        conn = _postgres_connect(POSTGRES_ADMIN_URL)
    except Exception as exc:
        message = f"PostgreSQL at {POSTGRES_ADMIN_URL} does not answer ({exc})"
        if IN_CI:
            pytest.fail(message + "; CI must run the PostgreSQL tests")
        pytest.skip(message + "; PostgreSQL store tests skipped")
    conn.close()  # type: ignore[attr-defined]
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"carveout_test_{uuid.uuid4().hex[:12]}"
    admin = _postgres_connect(postgres_server)
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    base = postgres_server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Each store test runs against SQLite and against PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    url: str = request.getfixturevalue("postgres_url")
    return url
