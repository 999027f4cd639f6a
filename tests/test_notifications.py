"""Notifications end to end: real webhook receiver and SMTP server, retries, restarts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .receivers import SmtpServer, WebhookReceiver, signature_verifies
from .system import System, wait_for

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def peers() -> Iterator[tuple[WebhookReceiver, SmtpServer]]:
    receiver, smtp = WebhookReceiver(failures=2), SmtpServer()
    receiver.start()
    smtp.start()
    try:
        yield receiver, smtp
    finally:
        receiver.stop()
        smtp.stop()


@pytest.fixture(scope="module")
def notifying(
    tmp_path_factory: pytest.TempPathFactory, peers: tuple[WebhookReceiver, SmtpServer]
) -> Iterator[System]:
    _, smtp = peers
    system = System(
        tmp_path_factory.mktemp("var"),
        extra_env={
            "CARVEOUT_SMTP_HOST": "127.0.0.1",
            "CARVEOUT_SMTP_PORT": str(smtp.port),
            "CARVEOUT_NOTIFICATION_RETRY_BASE_SECONDS": "0.3",
            "CARVEOUT_NOTIFICATION_DELIVERY_POLL_SECONDS": "0.1",
        },
    )
    system.start()
    try:
        yield system
    finally:
        system.stop()


def contact_secret(system: System, grant_id: str) -> str:
    """How a grantee learns its webhook's secret: the regulator rotates it (answered once)
    and hands it over; listings never show one."""

    def contact() -> list[dict[str, Any]]:
        subscriptions = system.call("notification", "GET", "/v1/subscriptions").json()
        return [s for s in subscriptions if s["grant_id"] == grant_id]

    [mine] = wait_for(contact, 10, "the grant contact's subscription")
    assert "secret" not in mine
    rotated = system.call(
        "notification", "POST", f"/v1/subscriptions/{mine['subscription_id']}/rotate-secret"
    )
    assert rotated.status_code == 200, rotated.text
    secret: str = rotated.json()["secret"]
    return secret


def issue_with_webhook(
    system: System, demo_grant: dict[str, Any], grantee: str, url: str
) -> dict[str, Any]:
    body = {
        **demo_grant,
        "grantee": {**demo_grant["grantee"], "id": grantee, "contacts": [
            {"kind": "webhook", "address": url}
        ]},
    }  # fmt: skip
    response = system.call("grant", "POST", "/v1/grants", json=body)
    assert response.status_code == 201, response.text
    grant: dict[str, Any] = response.json()
    return grant


def test_webhooks_retry_to_one_signed_delivery_and_email_is_sent(
    notifying: System, peers: tuple[WebhookReceiver, SmtpServer], demo_grant: dict[str, Any]
) -> None:
    receiver, smtp = peers
    response = notifying.call(
        "notification",
        "POST",
        "/v1/subscriptions",
        json={
            "channel": "email",
            "address": "regulator@example.gov",
            "event_types": ["carveout.revoked"],
            "grantee_id": "org-hooks",
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["secret"] is None
    grant = issue_with_webhook(notifying, demo_grant, "org-hooks", receiver.url)
    secret = contact_secret(notifying, grant["grant_id"])
    revoked = notifying.call(
        "grant", "POST", f"/v1/grants/{grant['grant_id']}/revoke", json={"reason": "test"}
    )
    assert revoked.status_code == 200

    def both_accepted() -> bool:
        return len(receiver.accepted()) == 2

    wait_for(both_accepted, 20, "issue and revocation delivered to the webhook")
    assert set(receiver.accepted().values()) == {1}  # exactly one accepted each
    assert all(n == 3 for n in receiver.attempts().values())  # two failures first
    accepted = [d for d in receiver.deliveries if d.accepted]
    # Signed with the secret made at rotation (the revocation, made after it, for sure).
    revocation = [d for d in accepted if json.loads(d.body)["type"] == "carveout.revoked"]
    assert revocation and all(signature_verifies(d, secret) for d in revocation)
    assert {json.loads(d.body)["type"] for d in accepted} == {"grant.issued", "carveout.revoked"}

    wait_for(lambda: smtp.inbox.messages, 10, "the regulator's email")
    [mail] = smtp.inbox.messages
    assert mail["To"] == "regulator@example.gov"
    assert "carveout.revoked" in mail["Subject"]

    listed = notifying.call("notification", "GET", "/v1/notifications").json()
    statuses = {
        (n["event_type"], n["channel"]): (n["status"], n["attempts"]) for n in listed["items"]
    }
    assert statuses[("carveout.revoked", "webhook")] == ("delivered", 3)
    assert statuses[("carveout.revoked", "email")] == ("delivered", 1)


def test_a_restart_in_the_middle_of_retries_loses_and_duplicates_nothing(
    notifying: System, peers: tuple[WebhookReceiver, SmtpServer], demo_grant: dict[str, Any]
) -> None:
    receiver, _ = peers
    receiver.failures = 4
    before = set(receiver.accepted())
    grant = issue_with_webhook(notifying, demo_grant, "org-restart", receiver.url)

    def first_failure() -> bool:
        return any(d.body and grant["grant_id"].encode() in d.body for d in receiver.deliveries)

    wait_for(first_failure, 10, "a first, failed attempt")
    assert notifying.stop() == 0
    notifying.start()

    def delivered() -> list[str]:
        return [w for w in receiver.accepted() if w not in before]

    wait_for(delivered, 30, "the delivery after the restart")
    new = delivered()
    assert len(new) == 1
    assert receiver.accepted()[new[0]] == 1
    receiver.failures = 2


@pytest.mark.parametrize(
    "address",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://[fd00::1]/hook",
        "http://user:pw@example.com/hook",
    ],
)
def test_webhooks_to_internal_addresses_are_refused_by_both_services(
    notifying: System, demo_grant: dict[str, Any], address: str
) -> None:
    """`carveout up` opens loopback only: the receivers above work, these never do."""
    subscription = notifying.call(
        "notification",
        "POST",
        "/v1/subscriptions",
        json={"channel": "webhook", "address": address, "event_types": ["*"]},
    )
    assert subscription.status_code == 422, subscription.text
    body = {
        **demo_grant,
        "grantee": {**demo_grant["grantee"], "contacts": [{"kind": "webhook", "address": address}]},
    }
    grant = notifying.call("grant", "POST", "/v1/grants", json=body)
    assert grant.status_code == 422, grant.text
    assert "address" in grant.json()["message"]
