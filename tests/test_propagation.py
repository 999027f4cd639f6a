"""Did the revocation take effect everywhere, and when? (DESIGN §12, acknowledgements.)

On the real broker through ``carveout up``: enforcement acknowledges each grant version it
applies and beats every second; a regulator's revocation with ``"wait": "applied"``
answers once every live enforcer has applied it, and ``/propagation`` shows when it took
effect, when the log received it and when each enforcer applied it. An ack without
enforcement's signature is dead-lettered ``bad_signature`` and counts for nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carveout_contracts import EnforcementApplied, codec, topics

from .system import System, wait_for
from .test_bounded_consumers import letters_by_consumer
from .test_enforcement import issue
from .test_faults import produce_at

pytestmark = pytest.mark.broker


def propagation(system: System, grant_id: str) -> dict[str, Any]:
    response = system.call("grant", "GET", f"/v1/grants/{grant_id}/propagation", role="auditor")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_revocation_waits_until_every_live_enforcer_applied_it(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grant = issue(system, demo_grant, "org-propagation")
    gid = grant["grant_id"]
    alive = wait_for(
        lambda: propagation(system, gid)["alive"], 10, "an enforcer's heartbeat reaching grant"
    )
    issued = wait_for(
        lambda: (v := propagation(system, gid)["versions"][0])["complete"] and v,
        5,
        "the issue acknowledged",
    )
    assert [e["enforcer_id"] for e in issued["enforcers"]] == alive

    response = system.call(
        "grant",
        "POST",
        f"/v1/grants/{gid}/revoke",
        json={"reason": "propagation", "wait": "applied", "wait_seconds": 5},
    )
    assert response.status_code == 200, response.text
    revoked = response.json()
    found = revoked["propagation"]
    assert (found["version"], found["complete"], found["pending"]) == (2, True, [])
    assert {e["enforcer_id"] for e in found["enforcers"]} == set(alive)
    assert all(e["via"] == "ack" for e in found["enforcers"])

    # Decisions deny from the moment the enforcer applied it.
    answer = system.call(
        "enforcement",
        "POST",
        "/v1/decisions",
        role="gateway",
        json={
            "grantee_id": "org-propagation",
            "model_id": "mythos-preview",
            "user_id": "u",
            "user_country": "GB",
            "deployment_region": "us-west",
            "purpose": "vulnerability-scanning",
            "safeguards": ["access_logging", "mfa"],
            "units": 1,
            "gateway_id": "gw",
        },
    ).json()
    assert answer["decision"] == "deny", answer

    [_, shown] = propagation(system, gid)["versions"]
    assert shown["event_id"] == revoked["event_id"]
    effective, appended = at(shown["effective_at"]), at(shown["appended_at"])
    assert effective == at(revoked["effective_at"])
    # The log stamps in milliseconds: the append may read up to 1 ms before the effect.
    assert effective - timedelta(milliseconds=1) <= appended < effective + timedelta(seconds=5)
    assert shown["complete"] is True
    applied = [at(e["applied_at"]) for e in shown["enforcers"]]
    assert at(shown["complete_at"]) == max(applied)
    assert all(effective <= moment < effective + timedelta(seconds=5) for moment in applied)

    metrics = system.call("grant", "GET", "/metrics", role=None).text
    timed = [
        line for line in metrics.splitlines()
        if line.startswith("carveout_propagation_all_seconds_count")
    ]  # fmt: skip
    assert timed and float(timed[0].split()[-1]) >= 1, timed


def test_a_forged_ack_is_dead_lettered_and_counts_for_nothing(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grant = issue(system, demo_grant, "org-forged-ack")
    gid = grant["grant_id"]
    now = datetime.now(UTC)
    forged = EnforcementApplied.model_validate(
        {
            "producer": "enforcement",
            "occurred_at": now,
            "data": {
                "enforcer_id": "enf-forger",
                "grant_id": gid,
                "version": 1,
                "grant_event_id": str(uuid.uuid4()),
                "applied_at": now,
            },
        }
    )
    [position] = asyncio.run(
        produce_at(system.bootstrap, topics.ACKS, [codec.encode_value(forged)], gid, signed=False)
    )
    letters = letters_by_consumer(system, topics.ACKS, position, {"grant"})
    assert letters["grant"].reason == "bad_signature"
    [version] = propagation(system, gid)["versions"]
    assert "enf-forger" not in {e["enforcer_id"] for e in version["enforcers"]}
