"""Enforcement on the real broker: accesses from any Kafka client, judged as of their time."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carveout_contracts import topics

from .kafka import TopicReader, access_event, produce
from .system import System, wait_for

pytestmark = pytest.mark.broker

T0 = datetime(2026, 9, 10, 11, 0, tzinfo=UTC)


def issue(system: System, grant: dict[str, Any], grantee: str) -> dict[str, Any]:
    body = {**grant, "grantee": {**grant["grantee"], "id": grantee}}
    response = system.call("grant", "POST", "/v1/grants", json=body)
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    wait_for(
        lambda: (
            system.call("enforcement", "GET", f"/v1/grants/{issued['grant_id']}").status_code == 200
        ),
        2,
        "grant in enforcement",
    )
    return issued


def decisions(system: System, grantee: str) -> list[dict[str, Any]]:
    page = system.call("enforcement", "GET", "/v1/decisions", params={"grantee_id": grantee})
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def judge_all(system: System, grantee: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Produce events as a plain gateway and wait for every one's decision, by request id."""
    asyncio.run(produce(system.bootstrap, topics.ACCESS, list(events), key=grantee))
    wanted = {e["data"]["request_id"] for e in events}

    def all_decided() -> dict[str, Any] | None:
        found = {d["request_id"]: d for d in decisions(system, grantee)}
        return found if wanted <= set(found) else None

    return wait_for(all_decided, 10, f"decisions for {len(wanted)} accesses")


def test_a_denied_country_yields_one_breach_within_a_second(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grant = issue(system, demo_grant, "org-breach")

    async def scenario() -> tuple[list[Any], float]:
        async with TopicReader(system.bootstrap, topics.BREACHES) as breaches:
            started = time.monotonic()
            await produce(
                system.bootstrap,
                topics.ACCESS,
                [access_event("org-breach", T0, user_country="KP")],
                key="org-breach",
            )
            first = await breaches.read(1, within=1.0)
            elapsed = time.monotonic() - started
            return first + await breaches.settle(0.5), elapsed

    found, elapsed = asyncio.run(scenario())
    assert elapsed < 1.0
    [breach] = found
    assert breach.key == grant["grant_id"]
    assert breach.data.grant_id == grant["grant_id"]
    assert breach.data.severity == "critical"
    assert {v.condition_id for v in breach.data.violations} == {"countries", "embargo"}


def test_the_same_event_a_thousand_times_is_one_decision_and_one_breach(
    system: System, demo_grant: dict[str, Any]
) -> None:
    issue(system, demo_grant, "org-dupes")
    event = access_event("org-dupes", T0, user_country="RU")

    async def scenario() -> list[Any]:
        async with TopicReader(system.bootstrap, topics.BREACHES) as breaches:
            await produce(system.bootstrap, topics.ACCESS, [event] * 1000, key="org-dupes")
            first = await breaches.read(1, within=5)
            return first + await breaches.settle(1.0)

    found = asyncio.run(scenario())
    assert [b.data.access_event_id for b in found] == [uuid.UUID(event["event_id"])]
    wait_for(lambda: len(decisions(system, "org-dupes")) == 1, 5, "one decision")
    assert len(decisions(system, "org-dupes")) == 1


def test_poison_access_messages_are_dead_lettered_and_the_next_is_judged(
    system: System, demo_grant: dict[str, Any]
) -> None:
    issue(system, demo_grant, "org-poison")
    valid = access_event("org-poison", T0)
    unknown = {**access_event("org-poison", T0), "type": "access.teleported"}

    async def scenario() -> list[Any]:
        async with TopicReader(system.bootstrap, topics.DEADLETTER) as letters:
            await produce(
                system.bootstrap,
                topics.ACCESS,
                [b"\xff not json", json.dumps(unknown).encode(), valid],
                key="org-poison",
            )
            return await letters.read(2, within=5)

    letters = [x for x in asyncio.run(scenario()) if x.data.source_topic == topics.ACCESS]
    assert sorted(x.data.reason for x in letters) == ["bad_json", "unknown_type"]
    assert all(x.data.consumer == "enforcement" for x in letters)
    judged = wait_for(lambda: decisions(system, "org-poison"), 5, "the valid access judged")
    assert [d["request_id"] for d in judged] == [valid["data"]["request_id"]]


def test_every_condition_kind_on_the_real_broker(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grant = issue(system, demo_grant, "org-kinds")
    at = T0 + timedelta(days=1)
    cases = {
        "ok": access_event("org-kinds", at),
        "countries": access_event("org-kinds", at, user_country="FR"),
        "embargo": access_event("org-kinds", at, user_country="IR"),
        "regions": access_event("org-kinds", at, deployment_region="eu-west"),
        "purpose": access_event("org-kinds", at, purpose="exploit-development"),
        "safeguards": access_event("org-kinds", at, safeguards=["access_logging"]),
        "cap": access_event("org-kinds", at + timedelta(hours=1), units=1_000_001),
    }
    found = judge_all(system, "org-kinds", list(cases.values()))
    by_case = {name: found[e["data"]["request_id"]] for name, e in cases.items()}
    assert by_case["ok"]["decision"] == "allow"
    assert by_case["ok"]["grant_id"] == grant["grant_id"]
    for name in ("countries", "regions", "safeguards"):
        assert by_case[name]["decision"] == "deny", name
        assert [v["condition_id"] for v in by_case[name]["violations"]] == [name]
    assert {v["condition_id"] for v in by_case["embargo"]["violations"]} == {
        "countries",
        "embargo",
    }
    # purpose and cap are warnings: reported, not denied
    for name in ("purpose", "cap"):
        assert by_case[name]["decision"] == "allow", name
        assert [v["condition_id"] for v in by_case[name]["violations"]] == [name]
        assert by_case[name]["violations"][0]["severity"] == "warning"


def grant_event(kind: str, grant_id: str, version: int, at: datetime) -> dict[str, Any]:
    """A grant status change, as the grant service publishes it."""
    data: dict[str, Any] = {
        "grant_id": grant_id,
        "version": version,
        "reason": "test",
        "by": "regulator",
        "effective_at": at.isoformat().replace("+00:00", "Z"),
        "cause": "regulator",
    }
    if kind == "carveout.revoked":
        data = {
            "carveout_id": "co-mythos-2026",
            "grant_ids": [grant_id],
            "grant_versions": {grant_id: version},
            "reason": "test",
            "revoked_by": "regulator",
            "effective_at": data["effective_at"],
            "cause": "regulator",
            "breach_ids": [],
        }
    return {
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "version": 1,
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "producer": "grant",
        "key": grant_id,
        "data": data,
    }


def test_no_active_grant_reasons_and_the_as_of_rule(
    system: System, demo_grant: dict[str, Any]
) -> None:
    suspended_at = T0 + timedelta(days=2)
    revoked_at = T0 + timedelta(days=4)
    grant = issue(system, demo_grant, "org-asof")
    gid = grant["grant_id"]
    asyncio.run(
        produce(
            system.bootstrap,
            topics.GRANTS,
            [
                grant_event("grant.suspended", gid, 2, suspended_at),
                grant_event("grant.reinstated", gid, 3, suspended_at + timedelta(days=1)),
                grant_event("carveout.revoked", gid, 4, revoked_at),
            ],
            key=gid,
        )
    )
    wait_for(
        lambda: system.call("enforcement", "GET", f"/v1/grants/{gid}").json()["version"] == 4,
        3,
        "revocation applied",
    )
    cases = {
        "not_yet_valid": access_event("org-asof", datetime(2026, 6, 1, tzinfo=UTC)),
        "before_suspension": access_event("org-asof", suspended_at - timedelta(minutes=1)),
        "suspended": access_event("org-asof", suspended_at + timedelta(hours=1)),
        "reinstated": access_event("org-asof", suspended_at + timedelta(days=1, hours=1)),
        "before_revocation": access_event("org-asof", revoked_at - timedelta(seconds=1)),
        "revoked": access_event("org-asof", revoked_at + timedelta(seconds=1)),
        # After the grant's end, and in the past: an access may not be dated far ahead.
        "expired": access_event("org-expiry", datetime(2026, 11, 1, tzinfo=UTC)),
        "unknown": access_event("org-nobody", T0),
    }
    issue(system, {**demo_grant, "valid_until": "2026-10-01T00:00:00Z"}, "org-expiry")
    found: dict[str, Any] = {}
    for grantee in ("org-asof", "org-expiry", "org-nobody"):
        mine = [e for e in cases.values() if e["data"]["grantee_id"] == grantee]
        found |= judge_all(system, grantee, mine)
    by_case = {name: found[e["data"]["request_id"]] for name, e in cases.items()}
    for name in ("before_suspension", "reinstated", "before_revocation"):
        assert by_case[name]["decision"] == "allow", (name, by_case[name])
    for reason in ("not_yet_valid", "suspended", "revoked", "expired", "unknown"):
        decision = by_case[reason]
        assert decision["decision"] == "deny", reason
        [violation] = decision["violations"]
        assert (violation["kind"], violation["actual"]) == ("no_active_grant", reason)
    assert by_case["revoked"]["grant_version"] == 4
    assert by_case["unknown"]["grant_id"] is None


def test_a_decision_over_http_reflects_a_revocation_token(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grant = issue(system, demo_grant, "org-http")
    body = {
        "grantee_id": "org-http",
        "model_id": "mythos-preview",
        "user_id": "u",
        "user_country": "GB",
        "deployment_region": "us-west",
        "purpose": "vulnerability-scanning",
        "safeguards": ["access_logging", "mfa"],
        "units": 10,
        "gateway_id": "gw",
    }
    answer = system.call("enforcement", "POST", "/v1/decisions", role="gateway", json=body).json()
    assert answer["decision"] == "allow"
    assert answer["grant_id"] == grant["grant_id"]
    answer = system.call(
        "enforcement",
        "POST",
        "/v1/decisions",
        role="gateway",
        json={**body, "min_consistency": grant["consistency_token"]},
    ).json()
    assert answer["decision"] == "allow"
    assert answer["consistency"]["met"] is True


def test_the_cli_publishes_an_access_as_a_gateway(
    system: System, demo_grant: dict[str, Any]
) -> None:
    issue(system, demo_grant, "org-cli")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "carveout_ops",
            "access",
            "publish",
            "--grantee-id",
            "org-cli",
            "--user-country",
            "KP",
            "--occurred-at",
            "2026-09-10T11:04:59Z",
            "--json",
        ],
        env={**os.environ, "CARVEOUT_KAFKA_BOOTSTRAP": system.bootstrap},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    event = json.loads(result.stdout)
    [decision] = wait_for(lambda: decisions(system, "org-cli"), 5, "the CLI's access judged")
    assert decision["access_event_id"] == event["event_id"]
    assert decision["decision"] == "deny"
    assert {v["condition_id"] for v in decision["violations"]} == {"countries", "embargo"}
