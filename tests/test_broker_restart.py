"""The embedded broker dies and comes back empty under ``carveout up``: topics whose truth
is a store are put back from it, so a breach policy still counts every breach recorded
before; accesses that were on the log and not yet judged are counted as lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carveout_contracts import topics
from carveout_runtime.logread import read_topics

from .kafka import access_event, produce
from .receivers import WebhookReceiver
from .system import System, wait_for

pytestmark = pytest.mark.broker

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-grant.json"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    if os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP"):
        pytest.skip("restarts the embedded broker; an external broker is configured")
    system = System(tmp_path_factory.mktemp("broker-restart"))
    # Small batches: with its store locked, enforcement holds five accesses in hand and
    # leaves the rest on the log.
    system.extra_env["CARVEOUT_ENFORCEMENT_BATCH_MAX_RECORDS"] = "5"
    system.start()
    try:
        yield system
    finally:
        system.stop()


def kill_broker(system: System) -> None:
    found = subprocess.run(
        ["pgrep", "-f", f"tansu.*127.0.0.1:{system.broker_port}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert found, "the embedded broker's process"
    restarts = system.output().count("the embedded broker died")
    for pid in found:
        os.kill(int(pid), signal.SIGKILL)
    wait_for(
        lambda: system.output().count("the embedded broker died") > restarts,
        10,
        "the supervisor restarting the broker",
    )


def issue(system: System, grantee: str) -> dict[str, Any]:
    grant = json.loads(DEMO.read_text())
    grant["grantee"] = {"id": grantee, "name": grantee, "contacts": []}
    response = system.call("grant", "POST", "/v1/grants", json=grant)
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    wait_for(
        lambda: (
            system.call("enforcement", "GET", f"/v1/grants/{issued['grant_id']}").status_code == 200
        ),
        5,
        "the grant in enforcement",
    )
    return issued


def embargoed(system: System, grantee: str, count: int) -> None:
    events = [access_event(grantee, user_country="KP") for _ in range(count)]
    asyncio.run(produce(system.bootstrap, topics.ACCESS, events, key=grantee))


def breaches_of(system: System, grantee: str) -> int:
    page = system.call("enforcement", "GET", "/v1/breaches", params={"grantee_id": grantee})
    total: int = page.json()["total"]
    return total


def test_breaches_recorded_before_a_broker_restart_still_count_towards_the_policy(
    system: System,
) -> None:
    """Two breaches recorded while the grant service is paused, then the broker restarts
    empty: enforcement puts them back, and the third breach revokes the grant."""
    grantee = "org-restart-policy"
    grant = issue(system, grantee)
    grant_pid = int((system.var_dir / "run" / "grant.pid").read_text())
    os.kill(grant_pid, signal.SIGSTOP)
    try:
        embargoed(system, grantee, 2)
        wait_for(lambda: breaches_of(system, grantee) == 2, 10, "two breaches recorded")
        kill_broker(system)
    finally:
        os.kill(grant_pid, signal.SIGCONT)
    wait_for(
        lambda: system.call("grant", "GET", "/readyz", role=None).status_code == 200,
        30,
        "the grant service ready again",
    )
    embargoed(system, grantee, 1)
    wait_for(
        lambda: (
            system.call("grant", "GET", f"/v1/grants/{grant['grant_id']}").json()["status"]
            == "revoked"
        ),
        30,
        "the grant revoked by its policy (3 critical breaches)",
    )
    assert "putting" in system.output() and "back on carveout.breaches" in system.output()


def test_accesses_lost_with_the_broker_are_counted_not_hidden(system: System) -> None:
    """Accesses on the log while enforcement's store is locked are lost when the broker
    restarts empty, all but the batch in hand: /readyz and carveout_records_lost_total say
    how many."""
    grantee = "org-restart-lost"
    issue(system, grantee)
    lock = sqlite3.connect(system.var_dir / "enforcement.db", timeout=10, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        events = [access_event(grantee) for _ in range(25)]
        asyncio.run(produce(system.bootstrap, topics.ACCESS, events, key=grantee))
        # The ends are read twice a second: wait until enforcement has read these.
        wait_for(lambda: _seen_by_watch(system), 5, "the accesses on the log, seen")
        noticed = enforcement_restarts(system)
        kill_broker(system)
        # Held until enforcement has noticed: what it had fetched beyond the batch in hand
        # is dropped with the log (released earlier, it would judge its prefetched records).
        wait_for(
            lambda: enforcement_restarts(system) > noticed, 30, "enforcement noticing the restart"
        )
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    ready = wait_for(
        lambda: (
            (r := system.call("enforcement", "GET", "/readyz", role=None)).status_code == 200
            and "records_lost" in r.json()
            and r.json()
        ),
        30,
        "records lost shown by /readyz",
    )
    assert ready["records_lost"] == {"carveout.access": 20}
    metrics = system.call("enforcement", "GET", "/metrics", role=None).text
    assert 'carveout_records_lost_total{service="enforcement",topic="carveout.access"} 20.0' in (
        metrics
    )


def enforcement_restarts(system: System) -> int:
    return sum(
        1
        for line in system.output().splitlines()
        if line.lstrip().startswith("enforcement |") and "restarted without its log" in line
    )


def _seen_by_watch(system: System) -> bool:
    """Whether enforcement's restart watch has read the 25 accesses on the log."""
    for line in system.call("enforcement", "GET", "/metrics", role=None).text.splitlines():
        if line.startswith("carveout_log_end_offset") and 'topic="carveout.access"' in line:
            return float(line.rsplit(" ", 1)[1]) >= 25
    return False


def test_notification_outcomes_are_put_back_on_their_topic(system: System) -> None:
    """An outcome published before the broker restarted empty is on the new log again,
    with the same event id."""
    receiver = WebhookReceiver(failures=0)
    receiver.start()
    try:
        created = system.call(
            "notification",
            "POST",
            "/v1/subscriptions",
            json={"channel": "webhook", "address": receiver.url, "event_types": ["*"]},
        )
        assert created.status_code == 201, created.text
        grantee = "org-restart-outcomes"
        issue(system, grantee)
        embargoed(system, grantee, 1)
        before = wait_for(lambda: outcome_ids(system), 15, "an outcome on the log")
        kill_broker(system)
        wait_for(lambda: before <= outcome_ids(system), 30, "the outcomes put back")
    finally:
        receiver.stop()


def outcome_ids(system: System) -> set[str]:
    async def read() -> set[str]:
        found = set()
        async for batch in read_topics(system.bootstrap, [topics.NOTIFICATIONS]):
            found |= {json.loads(record.value)["event_id"] for record in batch}
        return found

    return asyncio.run(read())
