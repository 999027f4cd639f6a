"""The system under chaos: ``carveout up --replicas 2`` on PostgreSQL, four partitions,
and what the run needs to reach each part of it (replicas, their pids, the broker's)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from ..system import SERVICES, System, wait_for
from .databases import Databases

REPLICA_PORT_STEP = 10
METRIC = re.compile(r"^(\w+)\{([^}]*)\}\s+(\S+)$")

FAST = {
    "CARVEOUT_NOTIFICATION_RETRY_BASE_SECONDS": "0.3",
    "CARVEOUT_NOTIFICATION_RETRY_CAP_SECONDS": "2",
    "CARVEOUT_NOTIFICATION_DELIVERY_POLL_SECONDS": "0.1",
    "CARVEOUT_NOTIFICATION_LEASE_SECONDS": "5",
}


@dataclass(frozen=True)
class Replica:
    service: str
    index: int

    @property
    def label(self) -> str:
        return self.service if self.index == 0 else f"{self.service}-{self.index}"


@dataclass
class Cluster:
    system: System
    databases: Databases
    replicas: int = 2
    partitions: int = 4

    @classmethod
    def make(
        cls, var_dir: Path, databases: Databases, replicas: int = 2, partitions: int = 4
    ) -> Cluster:
        system = System(var_dir)
        system.extra_env.update(
            CARVEOUT_REPLICAS=str(replicas),
            CARVEOUT_PARTITIONS=str(partitions),
            **FAST,
            **{f"CARVEOUT_{s.upper()}_DATABASE_URL": databases.service_url(s) for s in SERVICES},
        )
        return cls(system, databases, replicas, partitions)

    @property
    def every_replica(self) -> list[Replica]:
        return [Replica(s, i) for s in SERVICES for i in range(self.replicas)]

    def url(self, service: str, index: int) -> str:
        return f"http://127.0.0.1:{self.system.ports[service] + REPLICA_PORT_STEP * index}"

    def token(self, role: str) -> str:
        return self.system.tokens()[role]

    def call(
        self,
        service: str,
        index: int,
        method: str,
        path: str,
        role: str = "regulator",
        timeout: float = 5,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(role)}"}
        return httpx.request(
            method,
            self.url(service, index) + path,
            headers=headers,
            timeout=timeout,
            **kwargs,
        )

    def ready(self, replica: Replica) -> bool:
        try:
            url = self.url(replica.service, replica.index) + "/readyz"
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def unready(self) -> dict[str, str]:
        """Each replica not ready, with what its ``/readyz`` says (or why it did not answer)."""
        found = {}
        for replica in self.every_replica:
            try:
                url = self.url(replica.service, replica.index) + "/readyz"
                answer = httpx.get(url, timeout=2)
            except httpx.HTTPError as exc:
                found[replica.label] = repr(exc)
                continue
            if answer.status_code != 200:
                found[replica.label] = answer.text[:400]
        return found

    def wait_each_ready(self, within: float, what: str) -> None:
        """Wait until each replica has been ready at least once from now (under traffic,
        not necessarily all at the same instant); a timeout names those never ready."""
        never = {r.label: "" for r in self.every_replica}

        def poll() -> bool:
            unready = self.unready()
            for label in list(never):
                if label in unready:
                    never[label] = unready[label]
                else:
                    del never[label]
            return not never

        try:
            wait_for(poll, within, what, every=0.2)
        except AssertionError:
            raise AssertionError(f"{what}: not within {within}s; never ready: {never}") from None

    def wait_all_ready(self, within: float, what: str) -> None:
        """Wait until every replica is ready; a timeout names those that are not, and why."""
        last: dict[str, str] = {}

        def ready() -> bool:
            nonlocal last
            last = self.unready()
            return not last

        try:
            wait_for(ready, within, what, every=0.2)
        except AssertionError:
            raise AssertionError(f"{what}: not within {within}s; not ready: {last}") from None

    def readyz(self, replica: Replica) -> dict[str, Any]:
        url = self.url(replica.service, replica.index) + "/readyz"
        found: dict[str, Any] = httpx.get(url, timeout=2).json()
        return found

    def metrics(self, replica: Replica, name: str) -> list[tuple[dict[str, str], float]]:
        url = self.url(replica.service, replica.index) + "/metrics"
        found = []
        for line in httpx.get(url, timeout=2).text.splitlines():
            match = METRIC.match(line)
            if match and match.group(1) == name:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
                found.append((labels, float(match.group(3))))
        return found

    def pid(self, replica: Replica) -> int:
        return int((self.system.var_dir / "run" / f"{replica.label}.pid").read_text())

    def broker_pids(self) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-f", f"tansu.*127.0.0.1:{self.system.broker_port}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        return [int(pid) for pid in found]

    def log_ends(self, topic: str) -> dict[int, int]:
        return asyncio.run(log_ends(self.system.bootstrap, topic))

    def carveout(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """A ``carveout`` command against this system, as an operator runs it."""
        env = {
            **self.system.env(),
            "CARVEOUT_KAFKA_BOOTSTRAP": self.system.bootstrap,
            "CARVEOUT_TRUSTED_KEYS": str(self.system.var_dir / "keys" / "trusted-keys.json"),
        }
        return subprocess.run(
            [sys.executable, "-m", "carveout_ops", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


async def log_ends(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        await consumer.stop()


async def read_raw(bootstrap: str, topic: str, within: float = 30) -> list[Any]:
    """Every record on ``topic`` from its beginning up to its end as of now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[Any] = []
        async with asyncio.timeout(within):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=100)
                for records in batch.values():
                    found += records
        return found
    finally:
        await consumer.stop()
