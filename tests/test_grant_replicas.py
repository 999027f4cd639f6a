"""Two grant service processes on one PostgreSQL database, on a real broker (DESIGN §11):
either serves regulator actions, one relays them all to ``carveout.grants`` in order, and
when the relaying one is killed the other relays within 5 seconds, losing nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from carveout_contracts import codec, topics
from carveout_ops.broker import free_port
from carveout_runtime.keyfiles import current_signing_key
from carveout_runtime.stores import make_engine

from .system import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

REGULATOR = {"Authorization": "Bearer r"}


@dataclass
class Replica:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"grant replica exited:\n{self.log.read_text()}")
        try:
            return httpx.get(self.url("/readyz"), timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def act(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url(path), json=body, headers=REGULATOR, timeout=10)


@pytest.fixture
def replicas(tmp_path: Path, kafka_bootstrap: str, postgres_url: str) -> Iterator[list[Replica]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARVEOUT_")}
    env.update(
        CARVEOUT_KAFKA_BOOTSTRAP=kafka_bootstrap,
        CARVEOUT_GRANT_DATABASE_URL=postgres_url,
        CARVEOUT_GRANT_GROUP_ID=f"carveout-grant-{uuid.uuid4().hex[:8]}",
        CARVEOUT_KEYS_DIR=str(tmp_path / "keys"),
        CARVEOUT_REGULATOR_TOKEN="r",
        CARVEOUT_GATEWAY_TOKEN="g",
        CARVEOUT_AUDITOR_TOKEN="a",
        CARVEOUT_SESSION_TIMEOUT_MS="3000",
        # Long enough for an action to see its event out while the relay changes hands.
        CARVEOUT_GRANT_RELAY_WAIT_SECONDS="6",
    )
    current_signing_key(tmp_path / "keys", "grant")  # made once: the replicas share it
    started: list[Replica] = []
    try:
        for n in range(2):
            port, log = free_port(), tmp_path / f"grant-{n}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "carveout_grant", "serve"],
                    env={**env, "CARVEOUT_GRANT_PORT": str(port)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append(Replica(port, process, log))
        # Each once: while the second joins their consumer group, readiness may flap.
        for n, replica in enumerate(started):
            wait_for(replica.ready, 60, f"grant replica {n} ready", every=0.1)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGINT)
        for replica in started:
            try:
                replica.process.wait(20)
            except subprocess.TimeoutExpired:
                replica.process.kill()


def grant_body(grantee: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "carveout_id": f"co-{grantee}",
        "model_id": "mythos-preview",
        "grantee": {"id": grantee, "name": grantee},
        "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_until": (now + timedelta(days=30)).isoformat(),
    }


def toggle(replica: Replica, grant_id: str, attempts: int = 20) -> dict[str, Any]:
    """Suspend or reinstate ``grant_id`` through ``replica``, again while the other
    replica's action wins (409); the action's answer."""
    for _ in range(attempts):
        grant = httpx.get(replica.url(f"/v1/grants/{grant_id}"), headers=REGULATOR).json()
        verb = "suspend" if grant["status"] == "active" else "reinstate"
        answer = replica.act(f"/v1/grants/{grant_id}/{verb}", {"reason": "replicas"})
        if answer.status_code == 200:
            body: dict[str, Any] = answer.json()
            return body
        assert answer.status_code == 409, answer.text
    raise AssertionError(f"no action on {grant_id} got through in {attempts} attempts")


async def read_grants_log(bootstrap: str) -> list[tuple[int, int, Any]]:
    """Every event on ``carveout.grants`` as ``(partition, offset, event)``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topics.GRANTS) or {0}
        tps = [TopicPartition(topics.GRANTS, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found = []
        async with asyncio.timeout(30):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    found += [
                        (r.partition, r.offset, codec.decode(topics.GRANTS, r.value))
                        for r in records
                    ]
        return found
    finally:
        await consumer.stop()


def versions_on_log(bootstrap: str, grant_ids: set[str]) -> tuple[dict[str, list[int]], int]:
    """Each of ``grant_ids``' versions as the log first gives them, in log order, and how
    many records concern them in all (repeats included)."""
    records = [r for r in asyncio.run(read_grants_log(bootstrap)) if r[2].key in grant_ids]
    seen: set[str] = set()
    versions: dict[str, list[int]] = defaultdict(list)
    for _, _, event in sorted(records, key=lambda r: (r[0], r[1])):
        if str(event.event_id) in seen:
            continue  # a repeat: consumers drop it by event id
        seen.add(str(event.event_id))
        versions[event.key].append(getattr(event.data, "version", 1))
    return versions, len(records)


def relay_holder_pid(database_url: str) -> int:
    with make_engine(database_url).connect() as connection:
        holder = connection.execute(text("SELECT holder FROM relay_lease")).scalar_one()
    return int(holder.split(":")[2])  # host:port:pid:nonce


def test_actions_through_either_replica_reach_the_log_once_each_in_order_and_survive_a_killed_relay(
    replicas: list[Replica], kafka_bootstrap: str, postgres_url: str
) -> None:
    grantee = f"org-{uuid.uuid4().hex[:8]}"
    grants = []
    for n in range(4):
        issued = replicas[n % 2].act("/v1/grants", grant_body(f"{grantee}-{n}"))
        assert issued.status_code == 201, issued.text
        grants.append(issued.json())
    ids = {g["grant_id"] for g in grants}

    # Both replicas act on the same grants at once: each action makes the next version
    # or is refused (409) and tried again, so versions stay unique and in order.
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda job: toggle(replicas[job % 2], grants[job // 6 % 4]["grant_id"]),
                range(24),
            )
        )
    assert all(a["published"] and a["appended_at"] for a in answers), answers
    made = {g: sorted(a["version"] for a in answers if a["grant_id"] == g) for g in ids}
    assert all(versions == list(range(2, 2 + len(versions))) for versions in made.values())

    expected = {g: [1, *made[g]] for g in ids}
    wait_for(
        lambda: versions_on_log(kafka_bootstrap, ids)[0] == expected, 10, "every version on the log"
    )
    assert versions_on_log(kafka_bootstrap, ids)[1] == 4 + 24  # and nothing twice

    # The relaying replica dies; actions go on through the other, whose relay takes over.
    leader_pid = relay_holder_pid(postgres_url)
    [leader] = [r for r in replicas if r.process.pid == leader_pid]
    [survivor] = [r for r in replicas if r is not leader]
    leader.process.send_signal(signal.SIGKILL)
    killed_at = datetime.now(UTC)
    later = [toggle(survivor, g["grant_id"]) for g in grants]
    # The first action after the kill reached the log within 5 s of it (the lease is 3 s).
    assert later[0]["published"], later[0]
    assert datetime.fromisoformat(later[0]["appended_at"]) - killed_at < timedelta(seconds=5)
    for answer in later:
        expected[answer["grant_id"]].append(answer["version"])
    wait_for(
        lambda: versions_on_log(kafka_bootstrap, ids)[0] == expected,
        10,
        "the actions after the kill on the log",
    )
    assert relay_holder_pid(postgres_url) == survivor.process.pid
    propagation = httpx.get(
        survivor.url(f"/v1/grants/{later[0]['grant_id']}/propagation"), headers=REGULATOR
    ).json()
    last = propagation["versions"][-1]
    assert (last["version"], last["event_id"]) == (later[0]["version"], later[0]["event_id"])
    assert last["appended_at"] is not None and last["effective_at"] is not None
