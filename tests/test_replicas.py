"""Two replicas of each service on PostgreSQL (``carveout up --replicas 2``), four
partitions, traffic, an enforcement replica killed mid-stream and revocations through
either grant replica: every access judged once, usage caps exact, every replica denying
after a revocation's consistency token, listings complete on either replica."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from carveout_contracts import topics

from .kafka import access_event, produce
from .system import System, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

GRANTEES = [f"org-replica-{n}" for n in range(6)]
CAP = 30
FIRST_WAVE, SECOND_WAVE = 20, 20
REPLICA_PORT_STEP = 10
DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-grant.json"


@pytest.fixture(scope="module")
def databases(postgres_server: str) -> Iterator[dict[str, str]]:
    """One fresh database per service, dropped afterwards."""
    import psycopg

    admin = psycopg.connect(postgres_server, autocommit=True, connect_timeout=3)
    base = postgres_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    names = {
        s: f"carveout_replicas_{s}_{uuid.uuid4().hex[:8]}"
        for s in ("grant", "enforcement", "notification")
    }
    for name in names.values():
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {service: f"{base}/{name}" for service, name in names.items()}
    finally:
        for name in names.values():
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def replicated(
    tmp_path_factory: pytest.TempPathFactory,
    databases: dict[str, str],
    kafka_bootstrap: str,
) -> Iterator[System]:
    external = kafka_bootstrap if os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP") else None
    system = System(tmp_path_factory.mktemp("replicas"), external_bootstrap=external)
    system.extra_env.update(
        CARVEOUT_REPLICAS="2",
        CARVEOUT_PARTITIONS="4",
        # A relay lease longer than the grant API's wait for the relay: a paused relaying
        # replica holds back publication past the answer (the late-relay test).
        CARVEOUT_GRANT_RELAY_LEASE_SECONDS="8",
        **{f"CARVEOUT_{s.upper()}_DATABASE_URL": url for s, url in databases.items()},
    )
    system.start(within=90)
    try:
        for service in system.ports:
            wait_for(lambda s=service: ready(system, s, 1), 60, f"{service} replica 1 ready")
        yield system
    finally:
        system.stop()


def url(system: System, service: str, replica: int) -> str:
    return f"http://127.0.0.1:{system.ports[service] + REPLICA_PORT_STEP * replica}"


def ready(system: System, service: str, replica: int) -> bool:
    try:
        return httpx.get(url(system, service, replica) + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def call(
    system: System,
    service: str,
    replica: int,
    method: str,
    path: str,
    role: str = "regulator",
    **kw: Any,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {system.tokens()[role]}"}
    return httpx.request(
        method, url(system, service, replica) + path, headers=headers, timeout=10, **kw
    )


def issue(system: System, grantee: str, replica: int) -> dict[str, Any]:
    grant = json.loads(DEMO.read_text())
    grant["grantee"]["id"] = grantee
    grant["grantee"]["contacts"] = []
    grant["conditions"] = [
        c if c["kind"] != "usage_cap" else {**c, "units": CAP} for c in grant["conditions"]
    ]
    response = call(system, "grant", replica, "POST", "/v1/grants", json=grant)
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


def decided(system: System, replica: int, grantee: str) -> list[dict[str, Any]]:
    page = call(
        system,
        "enforcement",
        replica,
        "GET",
        "/v1/decisions",
        params={"grantee_id": grantee, "limit": 1000},
    )
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def wave(system: System, moment: datetime, count: int) -> list[str]:
    events = [
        access_event(grantee, occurred_at=moment, units=1)
        for grantee in GRANTEES
        for _ in range(count)
    ]
    for grantee in GRANTEES:
        mine = [e for e in events if e["data"]["grantee_id"] == grantee]
        asyncio.run(produce(system.bootstrap, topics.ACCESS, mine, key=grantee))
    return [e["event_id"] for e in events]


def test_two_replicas_of_each_service_judge_every_access_once_with_exact_caps(
    replicated: System,
) -> None:
    system = replicated
    grants = {grantee: issue(system, grantee, n % 2) for n, grantee in enumerate(GRANTEES)}
    for replica in (0, 1):
        for grant in grants.values():
            wait_for(
                lambda r=replica, g=grant: (
                    call(system, "enforcement", r, "GET", f"/v1/grants/{g['grant_id']}").status_code
                    == 200
                ),
                10,
                f"grant in enforcement replica {replica}",
            )
    moment = datetime.now(UTC) - timedelta(seconds=1)
    wave(system, moment, FIRST_WAVE)
    for grantee in GRANTEES:
        wait_for(
            lambda g=grantee: len(decided(system, 1, g)) >= FIRST_WAVE,
            30,
            f"first wave of {grantee}",
        )

    # One enforcement replica dies; the group gives its partitions to the other (and to
    # it again once `carveout up` has restarted it) while the second wave arrives.
    pid_file = system.var_dir / "run" / "enforcement.pid"
    killed = int(pid_file.read_text())
    os.kill(killed, signal.SIGKILL)
    wave(system, moment, SECOND_WAVE)
    total = FIRST_WAVE + SECOND_WAVE
    for grantee in GRANTEES:
        wait_for(lambda g=grantee: len(decided(system, 1, g)) >= total, 60, f"all of {grantee}")
    wait_for(lambda: int(pid_file.read_text()) != killed, 30, "the killed replica restarted")
    wait_for(lambda: ready(system, "enforcement", 0), 60, "the restarted replica ready")

    for grantee in GRANTEES:
        on_one, on_other = decided(system, 1, grantee), decided(system, 0, grantee)
        assert len(on_one) == total, f"{grantee}: each access judged once"
        assert {d["access_event_id"] for d in on_one} == {d["access_event_id"] for d in on_other}
        over_cap = [d for d in on_one if any(v["kind"] == "usage_cap" for v in d["violations"])]
        assert len(over_cap) == total - CAP, f"{grantee}: the cap breaches as in one process"

    # A revocation through either grant replica: both enforcement replicas deny at once
    # when asked with its consistency token.
    for n, grantee in enumerate(GRANTEES[:2]):
        revoked = call(
            system,
            "grant",
            1 - n % 2,
            "POST",
            f"/v1/grants/{grants[grantee]['grant_id']}/revoke",
            json={"reason": "replica test"},
        )
        assert revoked.status_code == 200, revoked.text
        token = revoked.json()["consistency_token"]
        for replica in (0, 1):
            answer = call(
                system,
                "enforcement",
                replica,
                "POST",
                "/v1/decisions",
                role="gateway",
                json={
                    "grantee_id": grantee,
                    "model_id": "mythos-preview",
                    "user_id": "u",
                    "user_country": "GB",
                    "deployment_region": "us-west",
                    "purpose": "vulnerability-scanning",
                    "safeguards": ["access_logging", "mfa"],
                    "units": 0,
                    "gateway_id": "gw",
                    "min_consistency": token,
                },
            ).json()
            assert answer["decision"] == "deny", (replica, answer)
            assert answer["consistency"]["met"] is True


def relaying_replica(system: System, databases: dict[str, str]) -> int:
    """Which grant replica holds the relay lease (its holder names its port)."""
    import psycopg

    url = databases["grant"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        [(holder,)] = connection.execute("SELECT holder FROM relay_lease").fetchall()
    port = int(holder.split(":")[1])
    return (port - system.ports["grant"]) // REPLICA_PORT_STEP


def carveout(system: System, *args: str) -> dict[str, Any]:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "carveout_ops", *args, "--json"],
        env={**system.env(), "CARVEOUT_KAFKA_BOOTSTRAP": system.bootstrap},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_a_suspension_relayed_late_applies_to_accesses_the_log_received_after_it(
    replicated: System, databases: dict[str, str], tmp_path: Path
) -> None:
    """The relaying grant replica is paused between the suspension's commit and its relay:
    the other takes the relay over seconds later. Accesses that happened after the
    suspension took effect but reached the log before its event are judged without it;
    those after, with it; and enforcement's store equals its replay."""
    system = replicated
    grantee = "org-replica-late"
    leader = relaying_replica(system, databases)
    other = 1 - leader
    grant = issue(system, grantee, other)
    wait_for(
        lambda: (
            call(system, "enforcement", 0, "GET", f"/v1/grants/{grant['grant_id']}").status_code
            == 200
        ),
        10,
        "the grant in enforcement",
    )
    pid_file = system.var_dir / "run" / ("grant.pid" if leader == 0 else f"grant-{leader}.pid")
    paused = int(pid_file.read_text())
    os.kill(paused, signal.SIGSTOP)
    try:
        suspended = call(
            system,
            "grant",
            other,
            "POST",
            f"/v1/grants/{grant['grant_id']}/suspend",
            json={"reason": "late relay"},
        )
        assert suspended.status_code == 200, suspended.text
        assert suspended.json()["published"] is False, "relayed before the lease ran out"
        effective = datetime.fromisoformat(suspended.json()["effective_at"])
        before = [access_event(grantee, occurred_at=effective + timedelta(milliseconds=1))]
        asyncio.run(produce(system.bootstrap, topics.ACCESS, before, key=grantee))
        wait_for(
            lambda: call(
                system, "grant", other, "GET", f"/v1/grants/{grant['grant_id']}/propagation"
            ).json()["versions"][-1]["appended_at"],
            15,
            "the suspension relayed by the other replica",
        )
    finally:
        os.kill(paused, signal.SIGCONT)
    after = [access_event(grantee, occurred_at=effective + timedelta(milliseconds=2))]
    asyncio.run(produce(system.bootstrap, topics.ACCESS, after, key=grantee))
    judged = wait_for(
        lambda: len(found := decided(system, 0, grantee)) == 2 and found, 30, "both judged"
    )
    by_id = {d["access_event_id"]: d for d in judged}
    assert by_id[before[0]["event_id"]]["decision"] == "allow"
    assert by_id[after[0]["event_id"]]["decision"] == "deny"

    live = carveout(system, "digest", "enforcement")
    rebuilt = carveout(
        system, "replay", "enforcement", "--database-url", f"sqlite:///{tmp_path / 'e.db'}"
    )
    assert rebuilt["digest"] == live["digest"]


def test_every_store_shared_by_replicas_equals_its_replay(
    replicated: System, tmp_path: Path
) -> None:
    """After the traffic, kills and revocations above: each service's one store, written
    by two replicas, has the digest of its replay."""
    system = replicated
    for service in ("grant", "enforcement", "notification"):
        live = carveout(system, "digest", service)
        rebuilt = carveout(
            system, "replay", service, "--database-url", f"sqlite:///{tmp_path / service}.db"
        )
        assert rebuilt["digest"] == live["digest"], service
