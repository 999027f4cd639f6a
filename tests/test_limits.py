"""The limits of DESIGN §10 on the real broker, from outside: field limits (422 naming the
field and the limit), occurred_at bounds (422 at the HTTP edges, dead letter ``invalid``
on the topic), and a grant whose event would not fit (413), none of which stops what
comes after."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carveout_contracts import limits, topics

from .kafka import TopicReader, access_event, produce
from .system import System, wait_for

pytestmark = pytest.mark.broker

T0 = datetime(2026, 9, 10, 11, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory, kafka_container_bootstrap: str | None
) -> Iterator[System]:
    """The whole system, with HTTP bodies up to 8 MiB let through, so that a grant over the
    record limit reaches the check that refuses it."""
    running = System(
        tmp_path_factory.mktemp("var"),
        external_bootstrap=os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP") or kafka_container_bootstrap,
        extra_env={"CARVEOUT_HTTP_BODY_MAX_BYTES": str(8 * limits.MIB)},
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def issue(system: System, grant: dict[str, Any], grantee: str) -> dict[str, Any]:
    body = {**grant, "grantee": {**grant["grantee"], "id": grantee}}
    response = system.call("grant", "POST", "/v1/grants", json=body)
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    wait_for(
        lambda: (
            system.call("enforcement", "GET", f"/v1/grants/{issued['grant_id']}").status_code == 200
        ),
        5,
        "grant in enforcement",
    )
    return issued


def decided(system: System, grantee: str) -> list[str]:
    page = system.call("enforcement", "GET", "/v1/decisions", params={"grantee_id": grantee})
    return [d["request_id"] for d in page.json()["items"]]


# --------------------------------------------------------------------------- occurred_at


@pytest.mark.parametrize(
    ("name", "when", "bound"),
    [
        ("ancient", datetime(1, 1, 1, tzinfo=UTC), "2000-01-01"),
        ("future", None, "300s after"),
    ],
)
def test_an_access_out_of_time_bounds_is_dead_lettered_and_the_next_is_judged(
    system: System, demo_grant: dict[str, Any], name: str, when: datetime | None, bound: str
) -> None:
    grantee = f"org-time-{name}"
    issue(system, demo_grant, grantee)
    moment = when or datetime.now(UTC) + timedelta(minutes=10)
    refused = access_event(grantee, moment, user_country="KP")
    valid = access_event(grantee, T0)

    async def scenario() -> list[Any]:
        async with TopicReader(system.bootstrap, topics.DEADLETTER) as letters:
            await produce(system.bootstrap, topics.ACCESS, [refused, valid], key=grantee)
            return await letters.read(1, within=10)

    [letter] = [x for x in asyncio.run(scenario()) if x.data.source_topic == topics.ACCESS]
    assert (letter.data.reason, letter.data.consumer) == ("invalid", "enforcement")
    assert "occurred_at" in letter.data.error
    assert bound in letter.data.error
    assert json.loads(letter.data.payload)["event_id"] == refused["event_id"]
    judged = wait_for(lambda: decided(system, grantee), 10, "the next access judged")
    assert judged == [valid["data"]["request_id"]]


def decision_body(grantee: str, occurred_at: datetime) -> dict[str, Any]:
    return {**access_event(grantee)["data"], "occurred_at": iso(occurred_at)}


@pytest.mark.parametrize(
    ("when", "bound"),
    [(datetime(1, 1, 1, tzinfo=UTC), "2000-01-01"), (None, "300s after")],
    ids=["ancient", "future"],
)
@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/access"])
def test_http_edges_refuse_an_occurred_at_out_of_bounds(
    system: System, path: str, when: datetime | None, bound: str
) -> None:
    moment = when or datetime.now(UTC) + timedelta(minutes=10)
    body = decision_body("org-time-http", moment)
    response = system.call("enforcement", "POST", path, role="gateway", json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["errors"][0]["field"] == "occurred_at"
    assert bound in answer["message"]
    if path == "/v1/access":  # nothing was published: no decision ever appears
        batch = [decision_body("org-time-http", T0), body]
        response = system.call("enforcement", "POST", path, role="gateway", json=batch)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "1.occurred_at"


def test_an_occurred_at_within_the_skew_is_accepted(system: System) -> None:
    body = decision_body("org-time-ok", datetime.now(UTC) + timedelta(minutes=4))
    response = system.call("enforcement", "POST", "/v1/decisions", role="gateway", json=body)
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- grant limits


def test_a_grant_with_300_values_in_a_list_is_422_naming_the_field_and_the_limit(
    system: System, demo_grant: dict[str, Any]
) -> None:
    conditions = [
        {"id": "regions", "kind": "deployment_regions", "allow": [f"r{n}" for n in range(300)]}
    ]
    response = system.call(
        "grant", "POST", "/v1/grants", json={**demo_grant, "conditions": conditions}
    )
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "conditions.0.deployment_regions.allow" in message
    assert "at most 256 items" in message


def test_a_grant_over_the_record_limit_is_413_and_a_revocation_after_it_is_applied(
    system: System, demo_grant: dict[str, Any]
) -> None:
    kept = issue(system, demo_grant, "org-big")
    big = [
        {
            "id": f"purpose-{n}",
            "kind": "purposes",
            "allow": [f"purpose-{n}-{v:03d}-" + "x" * 30 for v in range(limits.MAX_LIST_VALUES)],
        }
        for n in range(limits.MAX_CONDITIONS)
    ]
    body = {**demo_grant, "grantee": {**demo_grant["grantee"], "id": "org-big"}, "conditions": big}
    refused = system.call("grant", "POST", "/v1/grants", json=body)
    assert refused.status_code == 413, refused.text
    assert "CARVEOUT_RECORD_MAX_BYTES" in refused.json()["message"]
    assert "524288" in refused.json()["message"]

    revoked = system.call(
        "grant", "POST", f"/v1/grants/{kept['grant_id']}/revoke", json={"reason": "after"}
    )
    assert revoked.status_code == 200, revoked.text
    wait_for(
        lambda: (
            system.call("enforcement", "GET", f"/v1/grants/{kept['grant_id']}").json()["status"]
            == "revoked"
        ),
        5,
        "the revocation applied by enforcement",
    )
