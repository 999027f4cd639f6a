"""Regulator actions and breach policies on the real broker, through carveout up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carveout_contracts import topics

from .kafka import TopicReader, access_event, produce
from .system import System, wait_for
from .test_enforcement import decisions, issue, judge_all

pytestmark = pytest.mark.broker

GATEWAY_ASK = {
    "model_id": "mythos-preview",
    "user_id": "u",
    "user_country": "GB",
    "deployment_region": "us-west",
    "purpose": "vulnerability-scanning",
    "safeguards": ["access_logging", "mfa"],
    "units": 10,
    "gateway_id": "gw",
}


def act(system: System, path: str, reason: str = "test") -> tuple[int, dict[str, Any]]:
    response = system.call("grant", "POST", path, json={"reason": reason})
    body: dict[str, Any] = response.json()
    return response.status_code, body


def test_a_revocation_token_makes_the_next_decision_deny(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grant = issue(system, demo_grant, "org-revoke")
    status, revoked = act(system, f"/v1/grants/{grant['grant_id']}/revoke")
    assert status == 200, revoked
    assert (revoked["version"], revoked["status"]) == (2, "revoked")
    assert revoked["event_type"] == "carveout.revoked"
    answer = system.call(
        "enforcement",
        "POST",
        "/v1/decisions",
        role="gateway",
        json={
            **GATEWAY_ASK,
            "grantee_id": "org-revoke",
            "min_consistency": revoked["consistency_token"],
        },
    ).json()
    assert answer["decision"] == "deny", answer
    [violation] = answer["violations"]
    assert (violation["kind"], violation["actual"]) == ("no_active_grant", "revoked")
    assert answer["consistency"]["met"] is True


def test_accesses_are_judged_as_of_the_revocation(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grant = issue(system, demo_grant, "org-asof-revoke")
    status, revoked = act(system, f"/v1/grants/{grant['grant_id']}/revoke")
    assert status == 200
    effective = datetime.fromisoformat(revoked["effective_at"])
    before = access_event("org-asof-revoke", effective - timedelta(seconds=1))
    after = access_event("org-asof-revoke", effective + timedelta(milliseconds=1))
    found = judge_all(system, "org-asof-revoke", [before, after])
    assert found[before["data"]["request_id"]]["decision"] == "allow"
    late = found[after["data"]["request_id"]]
    assert late["decision"] == "deny"
    assert [(v["kind"], v["actual"]) for v in late["violations"]] == [
        ("no_active_grant", "revoked")
    ]
    breaches = system.call(
        "enforcement", "GET", "/v1/breaches", params={"grantee_id": "org-asof-revoke"}
    ).json()
    assert [b["access_event_id"] for b in breaches["items"]] == [after["event_id"]]


def test_invalid_transitions_are_conflicts(system: System, demo_grant: dict[str, Any]) -> None:
    grant = issue(system, demo_grant, "org-transitions")
    gid = grant["grant_id"]
    assert act(system, f"/v1/grants/{gid}/reinstate")[0] == 409  # not suspended
    status, suspended = act(system, f"/v1/grants/{gid}/suspend")
    assert (status, suspended["status"], suspended["version"]) == (200, "suspended", 2)
    assert act(system, f"/v1/grants/{gid}/suspend")[0] == 409
    status, reinstated = act(system, f"/v1/grants/{gid}/reinstate")
    assert (status, reinstated["status"], reinstated["version"]) == (200, "active", 3)
    assert act(system, f"/v1/grants/{gid}/revoke")[0] == 200
    status, body = act(system, f"/v1/grants/{gid}/reinstate")
    assert status == 409
    assert "revoked" in body["message"]
    amend = {**{k: demo_grant[k] for k in ("valid_from", "valid_until", "conditions")}}
    response = system.call(
        "grant", "POST", f"/v1/grants/{gid}/amend", json={**amend, "reason": "x"}
    )
    assert response.status_code == 409
    assert act(system, "/v1/grants/grt_nope/suspend")[0] == 404
    view = system.call("enforcement", "GET", f"/v1/grants/{gid}").json()
    wait_for(
        lambda: system.call("enforcement", "GET", f"/v1/grants/{gid}").json()["version"] == 4,
        2,
        "enforcement at version 4",
    )
    assert view["grant_id"] == gid


def test_an_amendment_takes_effect_from_its_time(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grant = issue(system, demo_grant, "org-amend")
    terms = {k: demo_grant[k] for k in ("valid_from", "valid_until", "breach_policy")}
    conditions = [c for c in demo_grant["conditions"] if c["id"] != "countries"]
    conditions.append({"id": "countries", "kind": "user_countries", "allow": ["US"]})
    response = system.call(
        "grant",
        "POST",
        f"/v1/grants/{grant['grant_id']}/amend",
        json={**terms, "conditions": conditions, "reason": "GB removed"},
    )
    assert response.status_code == 200, response.text
    amended = response.json()
    effective = datetime.fromisoformat(amended["effective_at"])
    before = access_event("org-amend", effective - timedelta(seconds=1), user_country="GB")
    after = access_event("org-amend", effective + timedelta(seconds=1), user_country="GB")
    found = judge_all(system, "org-amend", [before, after])
    assert found[before["data"]["request_id"]]["decision"] == "allow"
    assert found[after["data"]["request_id"]]["grant_version"] == 2
    assert found[after["data"]["request_id"]]["decision"] == "deny"


def test_three_critical_breaches_revoke_the_grant_by_policy(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grant = issue(system, demo_grant, "org-policy")
    gid = grant["grant_id"]
    now = datetime.now(UTC)
    bad = [
        access_event("org-policy", now - timedelta(minutes=3), user_country="KP"),
        access_event("org-policy", now - timedelta(minutes=2), safeguards=["access_logging"]),
        access_event("org-policy", now - timedelta(minutes=1), deployment_region="cn-north"),
    ]

    async def scenario() -> list[Any]:
        async with TopicReader(system.bootstrap, topics.GRANTS) as grants:
            await produce(system.bootstrap, topics.ACCESS, list(bad), key="org-policy")
            found = await grants.read(1, within=10)
            return found + await grants.settle(1.0)

    events = [e for e in asyncio.run(scenario()) if e.key == gid]
    [revocation] = events
    assert revocation.type == "carveout.revoked"
    assert revocation.data.cause == "breach_policy"
    assert len(revocation.data.breach_ids) == 3
    assert system.call("grant", "GET", f"/v1/grants/{gid}").json()["status"] == "revoked"
    wait_for(
        lambda: (
            system.call("enforcement", "GET", f"/v1/grants/{gid}").json()["status"] == "revoked"
        ),
        2,
        "enforcement sees the revocation",
    )
    # a fourth breach changes nothing more
    asyncio.run(
        produce(
            system.bootstrap,
            topics.ACCESS,
            [access_event("org-policy", now, user_country="IR")],
            key="org-policy",
        )
    )
    wait_for(lambda: len(decisions(system, "org-policy")) == 4, 5, "fourth access judged")
    assert system.call("grant", "GET", f"/v1/grants/{gid}").json()["version"] == 2


def test_revoking_a_carveout_revokes_each_of_its_grants(
    system: System, demo_grant: dict[str, Any]
) -> None:
    carveout = {**demo_grant, "carveout_id": "co-whole"}
    first = issue(system, carveout, "org-whole-a")
    second = issue(system, carveout, "org-whole-b")
    status, body = act(system, "/v1/carveouts/co-whole/revoke")
    assert status == 200, body
    assert {g["grant_id"]: g["status"] for g in body["grants"]} == {
        first["grant_id"]: "revoked",
        second["grant_id"]: "revoked",
    }
    for gid in (first["grant_id"], second["grant_id"]):
        wait_for(
            lambda gid=gid: (
                system.call("enforcement", "GET", f"/v1/grants/{gid}").json()["status"] == "revoked"
            ),
            2,
            f"{gid} revoked in enforcement",
        )
    assert act(system, "/v1/carveouts/co-whole/revoke")[0] == 409
