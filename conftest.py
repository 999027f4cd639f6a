"""Fixtures for every test: a real Kafka-protocol broker and a PostgreSQL database of our own.

Broker: ``CARVEOUT_KAFKA_BOOTSTRAP`` when set; else, with ``CARVEOUT_TEST_CONTAINERS=1``
and a Docker engine that answers, a testcontainers Kafka for the session; else the embedded
Tansu broker on a free port. PostgreSQL: ``CARVEOUT_TEST_POSTGRES`` when set; else, with
``CARVEOUT_TEST_CONTAINERS=1`` and Docker, a testcontainers PostgreSQL for the session; else
127.0.0.1:5432. Each test gets a database of its own there, dropped after it; outside CI the
PostgreSQL tests are skipped, with the reason, when no server answers.

Containers are opt-in so that a machine with Docker does not silently switch what runs.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
POSTGRES_IMAGE = "postgres:16-alpine"


def containers_wanted() -> bool:
    """``CARVEOUT_TEST_CONTAINERS=1``: run Kafka and PostgreSQL in containers (opt-in)."""
    return os.environ.get("CARVEOUT_TEST_CONTAINERS", "").lower() in ("1", "true", "yes")


@functools.cache
def docker_engine_problem() -> str | None:
    """Why no Docker engine can be used (``None`` when one answers); costs milliseconds."""
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Skip, saying why, when no Docker engine answers."""
    problem = docker_engine_problem()
    if problem is not None:
        pytest.skip(f"Docker engine not available: {problem}")


def _use_containers(what: str) -> bool:
    if not containers_wanted():
        return False
    problem = docker_engine_problem()
    if problem is None:
        return True
    message = f"CARVEOUT_TEST_CONTAINERS is set but Docker does not answer ({problem})"
    if IN_CI:
        pytest.fail(message)
    warnings.warn(f"{message}: {what} falls back to the default", stacklevel=2)
    return False


def _testcontainers(module: str, name: str) -> Any:
    """A testcontainers class (``testcontainers.community.*`` since 4.15, before that top-level)."""
    for path in (f"testcontainers.community.{module}", f"testcontainers.{module}"):
        try:
            return getattr(importlib.import_module(path), name)
        except ImportError:
            continue
    raise ImportError(f"testcontainers has no {module} module: pip install -e '.[dev]'")


def kafka_container() -> Any:
    """A single-node Kafka (KRaft) testcontainer, not started yet."""
    return _testcontainers("kafka", "KafkaContainer")(KAFKA_IMAGE).with_kraft()


def postgres_container() -> Any:
    """A PostgreSQL testcontainer (psycopg 3 URLs), not started yet."""
    return _testcontainers("postgres", "PostgresContainer")(POSTGRES_IMAGE, driver=None)


@pytest.fixture(scope="session")
def make_kafka_container(docker_engine: None) -> Any:
    """Build (not start) Kafka testcontainers; skips when no Docker engine answers."""
    return kafka_container


@pytest.fixture(scope="session")
def make_postgres_container(docker_engine: None) -> Any:
    """Build (not start) PostgreSQL testcontainers; skips when no Docker engine answers."""
    return postgres_container


@pytest.fixture(scope="session")
def kafka_container_bootstrap() -> Iterator[str | None]:
    """The bootstrap of a session-wide Kafka container when containers are asked for, else None.

    ``CARVEOUT_KAFKA_BOOTSTRAP`` wins: no container is started when it is set.
    """
    if os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP") or not _use_containers("Kafka"):
        yield None
        return
    with kafka_container() as kafka:
        yield kafka.get_bootstrap_server()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_container_bootstrap: str | None) -> Iterator[str]:
    external = os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    if kafka_container_bootstrap is not None:
        yield kafka_container_bootstrap
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
def postgres_admin_url() -> Iterator[str]:
    """Where the PostgreSQL tests create their databases (see the module docstring)."""
    configured = os.environ.get("CARVEOUT_TEST_POSTGRES")
    if configured or not _use_containers("PostgreSQL"):
        yield configured or DEFAULT_POSTGRES_ADMIN_URL
        return
    with postgres_container() as postgres:
        yield postgres.get_connection_url()


@pytest.fixture(scope="session")
def postgres_server(postgres_admin_url: str) -> str:
    """The admin URL of a PostgreSQL server that answers (skips, or fails in CI, otherwise)."""
    try:
        conn = _postgres_connect(postgres_admin_url)
    except Exception as exc:
        message = f"PostgreSQL at {postgres_admin_url} does not answer ({exc})"
        if IN_CI:
            pytest.fail(message + "; CI must run the PostgreSQL tests")
        pytest.skip(message + "; PostgreSQL store tests skipped")
    conn.close()  # type: ignore[attr-defined]
    return postgres_admin_url


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
