"""Replay and digests after the demo's traffic: every rebuilt store matches the live one.

The replays must be side-effect free: the topics end where they ended, and no webhook or
email goes out while they run.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from carveout_contracts import topics
from carveout_runtime.logread import log_ends

from .receivers import SmtpServer, WebhookReceiver
from .system import SERVICES, System, wait_for

pytestmark = pytest.mark.broker


def groups(system: System) -> dict[str, list[str]]:
    """The services' consumer groups and their topics (enforcement reads the grants in a
    group of its own per replica, named after its enforcer id: host and port)."""
    enforcer = f"{socket.gethostname()}:{system.ports['enforcement']}"
    return {
        "carveout-grant": [topics.BREACHES, topics.ACKS],
        f"carveout-enforcement.grants.{enforcer}": [topics.GRANTS],
        "carveout-enforcement-access": [topics.ACCESS],
        "carveout-notification": [topics.GRANTS, topics.BREACHES],
    }


@pytest.fixture(scope="module")
def peers() -> Iterator[tuple[WebhookReceiver, SmtpServer]]:
    receiver, smtp = WebhookReceiver(failures=0), SmtpServer()
    receiver.start()
    smtp.start()
    try:
        yield receiver, smtp
    finally:
        receiver.stop()
        smtp.stop()


@pytest.fixture(scope="module")
def after_demo(
    tmp_path_factory: pytest.TempPathFactory, peers: tuple[WebhookReceiver, SmtpServer]
) -> Iterator[System]:
    """A system that has run the demo, with every consumer and outbox settled."""
    receiver, smtp = peers
    system = System(
        tmp_path_factory.mktemp("var"),
        extra_env={
            "CARVEOUT_SMTP_HOST": "127.0.0.1",
            "CARVEOUT_SMTP_PORT": str(smtp.port),
            "CARVEOUT_NOTIFICATION_RETRY_BASE_SECONDS": "0.1",
            "CARVEOUT_NOTIFICATION_RETRY_CAP_SECONDS": "0.2",
            "CARVEOUT_NOTIFICATION_DELIVERY_MAX_ATTEMPTS": "2",
            "CARVEOUT_NOTIFICATION_DELIVERY_POLL_SECONDS": "0.1",
        },
    )
    system.start()
    try:
        created = system.call(
            "notification",
            "POST",
            "/v1/subscriptions",
            json={"channel": "webhook", "address": receiver.url, "event_types": ["*"]},
        )
        assert created.status_code == 201, created.text
        demo = carveout(system, "demo", "--events", "3000")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        settle(system)
        yield system
    finally:
        system.stop()


def carveout(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carveout_ops", *args],
        env={**system.env(), "CARVEOUT_KAFKA_BOOTSTRAP": system.bootstrap},
        capture_output=True,
        text=True,
        timeout=180,
    )


async def _ends(bootstrap: str) -> dict[str, int]:
    found: dict[str, int] = dict.fromkeys(topics.ALL_TOPICS, 0)
    for tp, end in (await log_ends(bootstrap, topics.ALL_TOPICS)).items():
        found[tp.topic] += end
    return found


async def _lag(bootstrap: str, groups: dict[str, list[str]]) -> int:
    """Records not yet committed by the services' consumer groups, over all their topics."""
    ends = await log_ends(bootstrap, topics.ALL_TOPICS)
    lag = 0
    for group, group_topics in groups.items():
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            for tp, end in ends.items():
                if tp.topic in group_topics:
                    lag += end - (await consumer.committed(tp) or 0)
        finally:
            await consumer.stop()
    return lag


def settle(system: System) -> None:
    """Wait until every consumer has committed the whole log and nothing is left to send."""

    def settled() -> bool:
        pending = system.call(
            "notification", "GET", "/v1/notifications", params={"status": "pending", "limit": 1}
        ).json()["total"]
        outbox = system.call("grant", "GET", "/readyz", role=None).json()
        return (
            pending == 0
            and asyncio.run(_lag(system.bootstrap, groups(system))) == 0
            and all(check == "ok" for check in outbox.get("checks", {}).values())
        )

    wait_for(settled, 90, "every consumer caught up and every notification settled", every=0.5)
    # The last outcome announcements: every final notification is on the log.
    finished = system.call("notification", "GET", "/v1/notifications", params={"limit": 1})
    total = finished.json()["total"]
    wait_for(
        lambda: asyncio.run(_ends(system.bootstrap))[topics.NOTIFICATIONS] >= total,
        20,
        "every notification outcome announced",
    )


def test_replay_of_every_service_matches_its_live_digest(
    after_demo: System, tmp_path: Path, peers: tuple[WebhookReceiver, SmtpServer]
) -> None:
    receiver, smtp = peers
    hooks_before, mails_before = len(receiver.deliveries), len(smtp.inbox.messages)
    ends_before = asyncio.run(_ends(after_demo.bootstrap))
    assert ends_before[topics.ACCESS] >= 3000
    for service in SERVICES:
        live = carveout(after_demo, "digest", service, "--json")
        assert live.returncode == 0, live.stderr
        target = f"sqlite:///{tmp_path / f'{service}.db'}"
        rebuilt = carveout(after_demo, "replay", service, "--database-url", target, "--json")
        assert rebuilt.returncode == 0, rebuilt.stderr
        live_digest: dict[str, Any] = json.loads(live.stdout)
        report: dict[str, Any] = json.loads(rebuilt.stdout)
        assert report["tables"] == live_digest["tables"], service
        assert report["digest"] == live_digest["digest"], service
        assert report["events"] > 0
        # The rebuilt store, digested by the digest command, says the same.
        again = carveout(after_demo, "digest", service, "--database-url", target, "--json")
        assert json.loads(again.stdout)["digest"] == live_digest["digest"]
    ends_after = asyncio.run(_ends(after_demo.bootstrap))
    # Live enforcement beats every second on carveout.acks: that topic grows regardless.
    for grows in (ends_before, ends_after):
        del grows[topics.ACKS]
    assert ends_after == ends_before, "a replay published"
    assert len(receiver.deliveries) == hooks_before, "a replay sent a webhook"
    assert len(smtp.inbox.messages) == mails_before, "a replay sent an email"


def test_digest_covers_every_derived_table(after_demo: System) -> None:
    found = json.loads(carveout(after_demo, "digest", "enforcement", "--json").stdout)
    tables = found["tables"]
    assert set(tables) == {"grant_views", "decisions", "breaches", "usage", "processed_events"}
    assert tables["decisions"]["rows"] >= 3000
    assert "judged_at" not in tables["decisions"]["columns"]
    assert "judged_at" in tables["decisions"]["not_covered"]
    readable = carveout(after_demo, "digest", "enforcement")
    assert found["digest"] in readable.stdout


def test_replay_refuses_a_store_that_is_not_fresh(after_demo: System, tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'grant.db'}"
    assert carveout(after_demo, "replay", "grant", "--database-url", target).returncode == 0
    again = carveout(after_demo, "replay", "grant", "--database-url", target)
    assert again.returncode == 1
    assert "already has rows" in again.stderr
    # --since catches up a restored copy: everything is there already, nothing changes.
    since = carveout(
        after_demo, "replay", "grant", "--database-url", target, "--since",
        "2000-01-01T00:00:00Z", "--json",
    )  # fmt: skip
    assert since.returncode == 0, since.stderr
    live = json.loads(carveout(after_demo, "digest", "grant", "--json").stdout)
    assert json.loads(since.stdout)["digest"] == live["digest"]


def test_bad_since_is_a_clear_error(after_demo: System) -> None:
    result = carveout(after_demo, "replay", "grant", "--since", "yesterday")
    assert result.returncode == 2
    assert "not an ISO 8601 time" in result.stderr
