"""A receiver that dribbles its answer holds up no one: through ``carveout up``, real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from .receivers import SlowReceiver, SmtpServer, WebhookReceiver
from .system import System, wait_for

pytestmark = pytest.mark.broker

DEADLINE = 5.0
"""The delivery deadline of this module's system: short, so the slow attempt ends soon."""
EMAIL = "watcher@example.gov"


@pytest.fixture(scope="module")
def peers() -> Iterator[tuple[SlowReceiver, WebhookReceiver, SmtpServer]]:
    slow, fast, smtp = (
        SlowReceiver(body_bytes=120, pace=1.0),
        WebhookReceiver(failures=0),
        SmtpServer(),
    )
    for peer in (slow, fast, smtp):
        peer.start()
    try:
        yield slow, fast, smtp
    finally:
        for peer in (slow, fast, smtp):
            peer.stop()


@pytest.fixture(scope="module")
def notifying(
    tmp_path_factory: pytest.TempPathFactory,
    peers: tuple[SlowReceiver, WebhookReceiver, SmtpServer],
) -> Iterator[System]:
    _, _, smtp = peers
    system = System(
        tmp_path_factory.mktemp("var"),
        extra_env={
            "CARVEOUT_SMTP_HOST": "127.0.0.1",
            "CARVEOUT_SMTP_PORT": str(smtp.port),
            "CARVEOUT_NOTIFICATION_DELIVERY_DEADLINE_SECONDS": str(DEADLINE),
            "CARVEOUT_NOTIFICATION_DELIVERY_POLL_SECONDS": "0.1",
        },
    )
    system.start()
    try:
        yield system
    finally:
        system.stop()


def subscribe(system: System, channel: str, address: str) -> str:
    response = system.call(
        "notification",
        "POST",
        "/v1/subscriptions",
        json={"channel": channel, "address": address, "event_types": ["grant.issued"]},
    )
    assert response.status_code == 201, response.text
    subscription_id: str = response.json()["subscription_id"]
    return subscription_id


def test_a_slow_receiver_holds_up_neither_webhooks_nor_email_and_ends_by_the_deadline(
    notifying: System,
    peers: tuple[SlowReceiver, WebhookReceiver, SmtpServer],
    demo_grant: dict[str, Any],
) -> None:
    slow, fast, smtp = peers
    ids = {
        "slow": subscribe(notifying, "webhook", slow.url),
        "fast": subscribe(notifying, "webhook", fast.url),
        "email": subscribe(notifying, "email", EMAIL),
    }
    grant = {**demo_grant, "grantee": {**demo_grant["grantee"], "contacts": []}}
    response = notifying.call("grant", "POST", "/v1/grants", json=grant)
    assert response.status_code == 201, response.text

    def mine() -> dict[str, dict[str, Any]]:
        listed = notifying.call("notification", "GET", "/v1/notifications").json()["items"]
        by_subscription = {n["subscription_id"]: n for n in listed}
        return {name: by_subscription[sid] for name, sid in ids.items() if sid in by_subscription}

    def fast_ones_delivered() -> dict[str, dict[str, Any]] | None:
        # What the receivers saw first, then one listing: if the slow request had begun
        # before it, and the listing shows the slow one unfinished, both were answered while
        # the slow receiver was still answering.
        if not (slow.started and fast.accepted() and smtp.inbox.messages):
            return None
        seen = mine()
        if all(seen.get(name, {}).get("status") == "delivered" for name in ("fast", "email")):
            return seen
        return None

    # Generous for a loaded machine: the first event through a new system can take a while.
    # What fails when deliveries queue behind the slow receiver is the assertion below.
    seen = wait_for(fast_ones_delivered, 60, "the fast webhook and the email delivered")
    assert seen["slow"]["status"] == "pending", seen["slow"]
    assert seen["slow"]["finished_at"] is None
    assert list(fast.accepted().values()) == [1]
    [mail] = smtp.inbox.messages
    assert mail["To"] == EMAIL
    assert "grant.issued" in mail["Subject"]

    def slow_finished() -> dict[str, Any] | None:
        n = mine()["slow"]
        return n if n["status"] != "pending" else None

    finished = wait_for(slow_finished, DEADLINE + 30, "the slow receiver's notification finished")
    took = time.monotonic() - slow.started[0]
    # A 2xx came before the deadline cut the body short: delivered, at the first attempt.
    assert finished["status"] == "delivered", finished
    assert finished["attempts"] == 1
    assert finished["last_error"] is None
    assert len(slow.started) == 1  # never attempted again
    # Ended by the deadline, not when the status came (at once) nor when the body would have
    # (120 s); the deadline's clock starts a little before the request arrives.
    assert DEADLINE - 2 <= took < DEADLINE + 30, took
