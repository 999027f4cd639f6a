"""A grant whose contact Carveout would not write to is refused with 422 (DESIGN §10)."""

from __future__ import annotations

from typing import Any

import pytest

from carveout_runtime.edge import edge_state

from .conftest import Starter

REGULATOR = {"Authorization": "Bearer r"}


def with_contact(demo_body: dict[str, Any], kind: str, address: str) -> dict[str, Any]:
    grantee = {**demo_body["grantee"], "contacts": [{"kind": kind, "address": address}]}
    return {**demo_body, "grantee": grantee}


@pytest.mark.parametrize(
    ("kind", "address", "named"),
    [
        ("webhook", "http://169.254.169.254/latest/meta-data/", "169.254.0.0/16"),
        ("webhook", "http://10.0.0.1/hook", "10.0.0.0/8"),
        ("webhook", "http://[fd00::1]/hook", "fc00::/7"),
        ("webhook", "http://user:pw@example.com/hook", "userinfo"),
        ("webhook", "https://hooks.example.com/hook", "resolves to 127.0.0.1"),
        ("email", "ops@example.com\r\nBcc: all@example.com", "grantee.contacts.0"),
        ("email", "Ops <ops@example.com>", "grantee.contacts.0.address"),
    ],
)
async def test_a_contact_carveout_will_not_write_to_is_422(
    start_grant: Starter, demo_body: dict[str, Any], kind: str, address: str, named: str
) -> None:
    async with start_grant() as harness:
        edge_state(harness.app).resolve = lambda host, port: ["127.0.0.1"]
        response = await harness.client.post(
            "/v1/grants", json=with_contact(demo_body, kind, address), headers=REGULATOR
        )
        assert response.status_code == 422, response.text
        assert named in response.text
        assert harness.published == []


async def test_the_allow_list_opens_loopback_contacts(
    start_grant: Starter, demo_body: dict[str, Any]
) -> None:
    async with start_grant(webhook_allow_networks="127.0.0.0/8,::1/128") as harness:
        edge_state(harness.app).resolve = lambda host, port: ["127.0.0.1"]
        body = with_contact(demo_body, "webhook", "https://hooks.example.com/hook")
        response = await harness.client.post("/v1/grants", json=body, headers=REGULATOR)
        assert response.status_code == 201, response.text
