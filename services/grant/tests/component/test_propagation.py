"""Propagation in the grant service (DESIGN §12): acks and heartbeats consumed from
``carveout.acks``, ``GET /v1/grants/{id}/propagation``, and regulator actions that answer
once their version is applied (``"wait": "applied"``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import Response

from carveout_contracts import (
    EnforcementApplied,
    EnforcementHeartbeat,
    codec,
    topics,
)
from carveout_grant.acks_store import AckStore

from .conftest import AUDITOR, GATEWAY, REGULATOR, GrantHarness, Starter


class SteppingClock:
    """The grant service's clock, moved on by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def heartbeat(harness: GrantHarness, enforcer: str, at: datetime) -> None:
    event = EnforcementHeartbeat.model_validate(
        {
            "producer": "enforcement",
            "occurred_at": at,
            "data": {"enforcer_id": enforcer, "grants_positions": {}, "at": at},
        }
    )
    await harness.broker.publish(codec.encode_value(event), topics.ACKS, key=enforcer.encode())


async def ack(
    harness: GrantHarness, enforcer: str, grant_id: str, version: int, at: datetime
) -> None:
    event = EnforcementApplied.model_validate(
        {
            "producer": "enforcement",
            "occurred_at": at,
            "data": {
                "enforcer_id": enforcer,
                "grant_id": grant_id,
                "version": version,
                "grant_event_id": str(event_of(harness, grant_id, version)),
                "applied_at": at,
            },
        }
    )
    await harness.broker.publish(codec.encode_value(event), topics.ACKS, key=grant_id.encode())


def event_of(harness: GrantHarness, grant_id: str, version: int) -> uuid.UUID:
    """The id of the event that made a grant's version (or a made-up one before it exists)."""
    book = harness.app.state.context.propagation
    made = [v for v in book.store.versions(grant_id) or () if v.version == version]
    return uuid.UUID(made[0].event_id) if made else uuid.uuid4()


async def until(check: Callable[[], bool], within_s: float, what: str) -> None:
    """Wait for a condition another task brings about, failing after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within_s}s")
        await asyncio.sleep(0.001)


async def issue(harness: GrantHarness, body: dict[str, Any]) -> dict[str, Any]:
    response = await harness.client.post("/v1/grants", json=body, headers=REGULATOR)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def propagation(harness: GrantHarness, grant_id: str, **params: Any) -> Response:
    return await harness.client.get(
        f"/v1/grants/{grant_id}/propagation", params=params, headers=AUDITOR
    )


@pytest.fixture
async def clocked(start_grant: Starter) -> Any:
    clock = SteppingClock()
    async with start_grant(clock=clock) as harness:
        yield harness, clock


async def test_each_version_shows_who_applied_it_and_who_is_pending(
    clocked: tuple[GrantHarness, SteppingClock], demo_body: dict[str, Any]
) -> None:
    harness, clock = clocked
    grant = await issue(harness, demo_body)
    gid = grant["grant_id"]
    await heartbeat(harness, "enf-a", clock.now)
    await heartbeat(harness, "enf-b", clock.now)
    suspended = await harness.client.post(
        f"/v1/grants/{gid}/suspend", json={"reason": "r"}, headers=REGULATOR
    )
    applied = clock.now + timedelta(milliseconds=3)
    await ack(harness, "enf-a", gid, 1, applied)
    await ack(harness, "enf-b", gid, 1, applied + timedelta(milliseconds=1))
    await ack(harness, "enf-a", gid, 2, applied + timedelta(milliseconds=2))

    answer = (await propagation(harness, gid)).json()
    assert answer["grant_id"] == gid
    assert answer["alive"] == ["enf-a", "enf-b"]
    assert answer["total_versions"] == 2
    first, second = answer["versions"]
    assert (first["version"], first["event_type"]) == (1, "grant.issued")
    assert first["event_id"] == grant["event_id"]
    assert first["effective_at"] == grant["effective_at"]
    assert [e["enforcer_id"] for e in first["enforcers"]] == ["enf-a", "enf-b"]
    assert first["pending"] == []
    assert first["complete"] is True
    assert datetime.fromisoformat(first["complete_at"]) == applied + timedelta(milliseconds=1)
    assert (second["version"], second["event_type"]) == (2, "grant.suspended")
    assert second["effective_at"] == suspended.json()["effective_at"]
    assert [(e["enforcer_id"], e["via"]) for e in second["enforcers"]] == [("enf-a", "ack")]
    assert (second["pending"], second["complete"], second["complete_at"]) == (
        ["enf-b"],
        False,
        None,
    )

    # enf-b falls silent: three seconds on, it is no longer waited for.
    clock.now += timedelta(seconds=3)
    await heartbeat(harness, "enf-a", clock.now)
    latest = (await propagation(harness, gid, newest=1)).json()
    assert latest["alive"] == ["enf-a"]
    [only] = latest["versions"]
    assert (only["version"], only["pending"], only["complete"]) == (2, [], True)


async def test_a_repeated_ack_changes_nothing(
    clocked: tuple[GrantHarness, SteppingClock], demo_body: dict[str, Any]
) -> None:
    harness, clock = clocked
    gid = (await issue(harness, demo_body))["grant_id"]
    await heartbeat(harness, "enf-a", clock.now)
    for _ in range(2):
        await ack(harness, "enf-a", gid, 1, clock.now)
    await ack(harness, "enf-a", gid, 1, clock.now + timedelta(seconds=1))  # a later re-apply
    [version] = (await propagation(harness, gid)).json()["versions"]
    assert [datetime.fromisoformat(e["applied_at"]) for e in version["enforcers"]] == [clock.now]


async def test_propagation_is_for_regulators_and_auditors_and_known_grants(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    gid = (await issue(grant_service, demo_body))["grant_id"]
    path = f"/v1/grants/{gid}/propagation"
    assert (await grant_service.client.get(path, headers=REGULATOR)).status_code == 200
    assert (await grant_service.client.get(path, headers=GATEWAY)).status_code == 403
    assert (await grant_service.client.get(path)).status_code == 401
    missing = await grant_service.client.get("/v1/grants/grt_nope/propagation", headers=AUDITOR)
    assert missing.status_code == 404
    assert "grt_nope" in missing.json()["message"]
    too_many = await grant_service.client.get(path, params={"newest": 1001}, headers=AUDITOR)
    assert too_many.status_code == 422


def acting(harness: GrantHarness, path: str, body: dict[str, Any]) -> asyncio.Task[Response]:
    """A regulator's call, under way while the test plays enforcement."""
    return asyncio.create_task(harness.client.post(path, json=body, headers=REGULATOR))


async def test_a_revocation_waiting_for_applied_answers_when_the_ack_arrives(
    clocked: tuple[GrantHarness, SteppingClock], demo_body: dict[str, Any]
) -> None:
    harness, clock = clocked
    gid = (await issue(harness, demo_body))["grant_id"]
    await heartbeat(harness, "enf-a", clock.now)
    started = time.monotonic()
    body = {"reason": "r", "wait": "applied", "wait_seconds": 10}
    answer = acting(harness, f"/v1/grants/{gid}/revoke", body)
    await until(lambda: harness.service.store.counts() == (2, 2), 5, "the revocation relayed")
    assert not answer.done()  # waiting for enforcement
    await ack(harness, "enf-a", gid, 2, clock.now)
    response = await answer
    assert time.monotonic() - started < 5  # woken by the ack, not by the deadline
    assert response.status_code == 200, response.text
    revoked = response.json()
    assert (revoked["version"], revoked["status"]) == (2, "revoked")
    found = revoked["propagation"]
    assert (found["version"], found["complete"], found["pending"]) == (2, True, [])
    assert [e["enforcer_id"] for e in found["enforcers"]] == ["enf-a"]
    assert found["event_id"] == revoked["event_id"]


async def test_a_wait_sees_an_ack_another_replica_folded(
    clocked: tuple[GrantHarness, SteppingClock], demo_body: dict[str, Any]
) -> None:
    """Grant replicas split the acks topic: the ack may reach the store through another
    replica's consumer, which wakes nobody here; the waiting call reads the store."""
    harness, clock = clocked
    gid = (await issue(harness, demo_body))["grant_id"]
    await heartbeat(harness, "enf-a", clock.now)
    body = {"reason": "r", "wait": "applied", "wait_seconds": 10}
    answer = acting(harness, f"/v1/grants/{gid}/suspend", body)
    await until(lambda: harness.service.store.counts() == (2, 2), 5, "the suspension relayed")
    other_replica = AckStore(harness.service.store.engine)
    applied = EnforcementApplied.model_validate(
        {
            "producer": "enforcement",
            "occurred_at": clock.now,
            "data": {
                "enforcer_id": "enf-a",
                "grant_id": gid,
                "version": 2,
                "grant_event_id": str(event_of(harness, gid, 2)),
                "applied_at": clock.now,
            },
        }
    )
    assert other_replica.record_ack(applied)
    response = await asyncio.wait_for(answer, 5)
    assert response.json()["propagation"]["complete"] is True


async def test_a_wait_that_runs_out_says_who_is_pending(
    clocked: tuple[GrantHarness, SteppingClock], demo_body: dict[str, Any]
) -> None:
    harness, clock = clocked
    gid = (await issue(harness, demo_body))["grant_id"]
    await heartbeat(harness, "enf-a", clock.now)
    await heartbeat(harness, "enf-b", clock.now)
    await ack(harness, "enf-a", gid, 2, clock.now)  # before it was even recorded: kept
    body = {"reason": "r", "wait": "applied", "wait_seconds": 0.2}
    response = await harness.client.post(f"/v1/grants/{gid}/suspend", json=body, headers=REGULATOR)
    assert response.status_code == 200, response.text
    found = response.json()["propagation"]
    assert (found["complete"], found["pending"]) == (False, ["enf-b"])
    assert [e["enforcer_id"] for e in found["enforcers"]] == ["enf-a"]


async def test_an_issue_and_an_amendment_can_wait_too(
    clocked: tuple[GrantHarness, SteppingClock], demo_body: dict[str, Any]
) -> None:
    harness, clock = clocked
    await heartbeat(harness, "enf-a", clock.now)
    waiting = {"wait": "applied", "wait_seconds": 0.05}
    issued = await harness.client.post(
        "/v1/grants", json={**demo_body, **waiting}, headers=REGULATOR
    )
    assert issued.status_code == 201, issued.text
    assert issued.json()["propagation"]["pending"] == ["enf-a"]
    gid = issued.json()["grant_id"]
    terms = {k: demo_body[k] for k in ("valid_from", "valid_until", "conditions")}
    amended = await harness.client.post(
        f"/v1/grants/{gid}/amend", json={**terms, "reason": "r", **waiting}, headers=REGULATOR
    )
    assert amended.status_code == 200, amended.text
    assert amended.json()["propagation"]["version"] == 2
    plain = await harness.client.post(
        f"/v1/grants/{gid}/suspend", json={"reason": "r"}, headers=REGULATOR
    )
    assert plain.json()["propagation"] is None


async def test_a_carveout_revocation_waits_for_each_revoked_grant(
    clocked: tuple[GrantHarness, SteppingClock], demo_body: dict[str, Any]
) -> None:
    harness, clock = clocked
    first = (await issue(harness, demo_body))["grant_id"]
    second = (await issue(harness, demo_body))["grant_id"]
    await heartbeat(harness, "enf-a", clock.now)
    body = {"reason": "r", "wait": "applied", "wait_seconds": 10}
    answer = acting(harness, f"/v1/carveouts/{demo_body['carveout_id']}/revoke", body)
    # Two issues, then the revocation: one event, or one per grant while the partition
    # count of carveout.grants is unknown (this harness has no broker to ask).
    await until(
        lambda: harness.service.store.counts() in {(3, 3), (4, 4)}, 5, "the revocation relayed"
    )
    await ack(harness, "enf-a", first, 2, clock.now)
    assert not answer.done()  # one of two
    await ack(harness, "enf-a", second, 2, clock.now)
    revoked = (await answer).json()
    assert set(revoked["propagation"]) == {first, second}
    assert all(p["complete"] for p in revoked["propagation"].values())
    assert [g["propagation"]["complete"] for g in revoked["grants"]] == [True, True]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"wait": "applied", "wait_seconds": 31}, "wait_seconds"),
        ({"wait": "applied", "wait_seconds": 0}, "wait_seconds"),
        ({"wait": "applied", "wait_seconds": True}, "wait_seconds"),
        ({"wait": "applied", "wait_seconds": "3"}, "wait_seconds"),
        ({"wait": "soon"}, "wait"),
    ],
)
async def test_a_wait_out_of_bounds_is_refused_naming_the_field(
    grant_service: GrantHarness, demo_body: dict[str, Any], extra: dict[str, Any], named: str
) -> None:
    gid = (await issue(grant_service, demo_body))["grant_id"]
    response = await grant_service.client.post(
        f"/v1/grants/{gid}/suspend", json={"reason": "r", **extra}, headers=REGULATOR
    )
    assert response.status_code == 422
    assert named in response.json()["message"]
    if extra.get("wait_seconds") == 31:
        assert "30" in response.json()["message"]
    assert grant_service.service.store.counts() == (1, 1)  # nothing was done
