"""Subscriptions over HTTP: addresses Carveout will not write to are 422, limits are named,
a signing secret is shown once and never listed, and rotation answers the new one once."""

from __future__ import annotations

from typing import Any

import pytest

from carveout_runtime.edge import edge_state

from .conftest import NotificationHarness, Starter

REGULATOR = {"Authorization": "Bearer r"}


def resolving_to(ip: str) -> Any:
    return lambda host, port: [ip]


async def subscribe(harness: NotificationHarness, to: str, **body: Any) -> Any:
    return await harness.client.post(
        "/v1/subscriptions",
        json={"channel": "webhook", "address": to, "event_types": ["*"], **body},
        headers=REGULATOR,
    )


@pytest.mark.parametrize(
    ("address", "named"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.0.0/16"),
        ("http://10.0.0.1/hook", "10.0.0.0/8"),
        ("http://[fd00::1]/hook", "fc00::/7"),
        ("http://[::1]:8080/hook", "::1/128"),
        ("http://[::ffff:169.254.169.254]/hook", "169.254.0.0/16"),
        ("http://100.64.0.7/hook", "100.64.0.0/10"),
        ("http://0.0.0.0/hook", "0.0.0.0/8"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://user:pw@example.com/hook", "userinfo"),
        ("ftp://example.com/hook", "http"),
        ("http://hooks.example.com/hook", "resolves to 127.0.0.1"),  # via the resolver below
    ],
)
async def test_webhooks_to_internal_addresses_are_refused(
    notification: NotificationHarness, address: str, named: str
) -> None:
    edge_state(notification.app).resolve = resolving_to("127.0.0.1")
    response = await subscribe(notification, address)
    assert response.status_code == 422, response.text
    assert named in response.text
    listed = await notification.client.get("/v1/subscriptions", headers=REGULATOR)
    assert listed.json() == []


async def test_the_allow_list_opens_the_ranges_it_names(start_notification: Starter) -> None:
    async with start_notification(webhook_allow_networks="127.0.0.0/8,::1/128") as harness:
        edge_state(harness.app).resolve = resolving_to("127.0.0.1")
        assert (await subscribe(harness, "http://hooks.example.com/hook")).status_code == 201
        assert (await subscribe(harness, "http://[::1]:9/hook")).status_code == 201
        assert (await subscribe(harness, "http://10.0.0.1/hook")).status_code == 422


async def test_a_public_webhook_is_accepted(notification: NotificationHarness) -> None:
    edge_state(notification.app).resolve = resolving_to("93.184.215.14")
    assert (await subscribe(notification, "https://hooks.example.com/hook")).status_code == 201


@pytest.mark.parametrize(
    "address",
    [
        "regulator@example.gov\r\nBcc: everyone@example.gov",
        "regulator@example.gov\nX: y",
        "Regulator <regulator@example.gov>",
        "a@example.gov, b@example.gov",
    ],
)
async def test_an_email_address_that_cannot_be_a_header_is_422(
    notification: NotificationHarness, address: str
) -> None:
    response = await notification.client.post(
        "/v1/subscriptions",
        json={"channel": "email", "address": address, "event_types": ["*"]},
        headers=REGULATOR,
    )
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("body", "limit"),
    [
        ({"event_types": ["grant.issued"] * 33}, "32"),
        ({"address": "https://hooks.example.com/" + "a" * 2000}, "2000"),
        ({"grantee_id": "g" * 201}, "200"),
    ],
)
async def test_subscription_limits_are_named(
    notification: NotificationHarness, body: dict[str, Any], limit: str
) -> None:
    edge_state(notification.app).resolve = resolving_to("93.184.215.14")
    response = await subscribe(notification, "https://hooks.example.com/hook", **body)
    assert response.status_code == 422, response.text
    assert limit in response.text


async def test_a_secret_is_shown_once_and_rotation_answers_the_new_one_once(
    notification: NotificationHarness,
) -> None:
    edge_state(notification.app).resolve = resolving_to("93.184.215.14")
    made = await subscribe(notification, "https://hooks.example.com/hook")
    assert made.status_code == 201
    sid, secret = made.json()["subscription_id"], made.json()["secret"]
    assert secret.startswith("whsec_")

    listed = await notification.client.get("/v1/subscriptions", headers=REGULATOR)
    assert listed.status_code == 200
    assert [s["subscription_id"] for s in listed.json()] == [sid]
    assert secret not in listed.text and "whsec_" not in listed.text

    rotated = await notification.client.post(
        f"/v1/subscriptions/{sid}/rotate-secret", headers=REGULATOR
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != secret
    assert rotated.json()["previous_secret_expires_at"]
    listed = await notification.client.get("/v1/subscriptions", headers=REGULATOR)
    assert "whsec_" not in listed.text
    assert listed.json()[0]["previous_secret_expires_at"]

    stored = notification.context.store.get_subscription(sid)
    assert (stored.secret, stored.previous_secret) == (new, secret)

    missing = await notification.client.post(
        "/v1/subscriptions/sub_nope/rotate-secret", headers=REGULATOR
    )
    assert missing.status_code == 404
