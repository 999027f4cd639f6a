"""Enforcement consuming ``carveout.grants``: projection, idempotence, dead letters, HTTP view."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from carveout_contracts import codec, topics
from carveout_enforcement.store import GrantViewRecord, ProcessedEvent

from .conftest import AUDITOR, EnforcementHarness, failing, golden_bytes

GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
Starter = Callable[..., AbstractAsyncContextManager[EnforcementHarness]]


def processed_marks(harness: EnforcementHarness) -> list[str]:
    with Session(harness.context.store.engine) as session:
        return list(session.exec(select(ProcessedEvent.event_id)).all())


def stored_versions(harness: EnforcementHarness) -> dict[str, int]:
    with Session(harness.context.store.engine) as session:
        rows = session.exec(select(GrantViewRecord.grant_id, GrantViewRecord.version)).all()
    return dict(rows)


async def get_grant(harness: EnforcementHarness, grant_id: str = GRANT_ID) -> dict[str, Any]:
    response = await harness.client.get(f"/v1/grants/{grant_id}", headers=AUDITOR)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def golden_with(event_type: str, **changes: Any) -> bytes:
    raw = json.loads(golden_bytes(event_type))
    raw.update(changes)
    return json.dumps(raw).encode()


# --------------------------------------------------------------------------- projection


async def test_an_issued_grant_is_answered_over_http(enforcement: EnforcementHarness) -> None:
    response = await enforcement.client.get(f"/v1/grants/{GRANT_ID}", headers=AUDITOR)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"

    await enforcement.publish(golden_bytes("grant.issued"))

    view = await get_grant(enforcement)
    assert view["grant_id"] == GRANT_ID
    assert (view["version"], view["status"]) == (1, "active")
    assert (view["grantee_id"], view["model_id"]) == ("org-netsec", "mythos-preview")
    assert view["carveout_id"] == "co-mythos-2026"
    assert view["valid_until"] == "2026-12-31T00:00:00Z"
    assert [c["id"] for c in view["conditions"]] == [
        "countries",
        "embargo",
        "regions",
        "purpose",
        "safeguards",
        "cap",
    ]
    assert [(p["version"], p["effective_at"]) for p in view["periods"]] == [(1, None)]
    assert view["breach_policy"]["revoke_after_critical"] == 3
    # the store and its processed mark were written together
    assert stored_versions(enforcement) == {GRANT_ID: 1}
    assert processed_marks(enforcement) == ["7c0b6c1e-3c55-4d1a-9f0e-2b1f0f3f9a10"]


async def test_the_same_event_five_times_is_processed_once(
    enforcement: EnforcementHarness,
) -> None:
    for _ in range(5):
        await enforcement.publish(golden_bytes("grant.issued"))
    await enforcement.publish(golden_bytes("grant.suspended"))
    for _ in range(4):
        await enforcement.publish(golden_bytes("grant.suspended"))

    assert sorted(processed_marks(enforcement)) == sorted(
        ["7c0b6c1e-3c55-4d1a-9f0e-2b1f0f3f9a10", "4b8d2f6a-0c1e-4a3b-9d5f-7e8a9b0c1d2e"]
    )
    handler = enforcement.context.grant_events
    assert (handler.processed, handler.duplicates, handler.dead_lettered) == (2, 8, 0)
    view = await get_grant(enforcement)
    assert (view["version"], view["status"]) == (3, "suspended")
    assert [p["version"] for p in view["periods"]] == [1, 3]
    assert stored_versions(enforcement) == {GRANT_ID: 3}


async def test_a_repeated_issue_after_a_suspension_does_not_reactivate(
    enforcement: EnforcementHarness,
) -> None:
    await enforcement.publish(golden_bytes("grant.issued"))
    await enforcement.publish(golden_bytes("grant.suspended"))
    await enforcement.publish(golden_bytes("grant.issued"))  # redelivered
    view = await get_grant(enforcement)
    assert (view["version"], view["status"]) == (3, "suspended")


async def test_a_suspension_after_issue_shows_suspended_then_reinstated(
    enforcement: EnforcementHarness,
) -> None:
    await enforcement.publish(golden_bytes("grant.issued"))
    await enforcement.publish(golden_bytes("grant.suspended"))
    view = await get_grant(enforcement)
    assert (view["version"], view["status"]) == (3, "suspended")
    assert [(p["version"], p["status"], p["effective_at"]) for p in view["periods"]] == [
        (1, "active", None),
        (3, "suspended", "2026-08-03T09:20:00Z"),
    ]

    await enforcement.publish(golden_bytes("grant.reinstated"))
    view = await get_grant(enforcement)
    assert (view["version"], view["status"]) == (4, "active")


async def test_the_golden_history_ends_revoked(enforcement: EnforcementHarness) -> None:
    for event_type in (
        "grant.issued",
        "grant.amended",
        "grant.suspended",
        "grant.reinstated",
        "carveout.revoked",
    ):
        await enforcement.publish(golden_bytes(event_type))
    view = await get_grant(enforcement)
    assert (view["version"], view["status"]) == (5, "revoked")
    assert [p["status"] for p in view["periods"]] == [
        "active",
        "active",
        "suspended",
        "active",
        "revoked",
    ]
    assert [c["units"] for c in view["conditions"] if c["kind"] == "usage_cap"] == [2_000_000]
    assert len(processed_marks(enforcement)) == 5


async def test_an_event_for_a_grant_never_issued_is_marked_and_skipped(
    enforcement: EnforcementHarness,
) -> None:
    await enforcement.publish(golden_bytes("grant.suspended"))
    assert processed_marks(enforcement) == ["4b8d2f6a-0c1e-4a3b-9d5f-7e8a9b0c1d2e"]
    assert stored_versions(enforcement) == {}
    response = await enforcement.client.get(f"/v1/grants/{GRANT_ID}", headers=AUDITOR)
    assert response.status_code == 404


async def test_the_projection_survives_a_restart(start_enforcement: Starter) -> None:
    async with start_enforcement() as first:
        await first.publish(golden_bytes("grant.issued"))
        await first.publish(golden_bytes("grant.suspended"))
    async with start_enforcement() as second:
        view = await get_grant(second)
        assert (view["version"], view["status"]) == (3, "suspended")
        # what was processed before the restart is still a duplicate after it
        await second.publish(golden_bytes("grant.suspended"))
        assert second.context.grant_events.duplicates == 1
        assert len(processed_marks(second)) == 2


# --------------------------------------------------------------------------- store failures


async def test_a_transient_store_failure_is_retried(
    start_enforcement: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with start_enforcement(store_retry_attempts=3) as harness:
        store = harness.context.store
        monkeypatch.setattr(store, "save_grants", failing(store.save_grants, failures=2))
        await harness.publish(golden_bytes("grant.issued"))
        assert (await get_grant(harness))["version"] == 1
        assert len(processed_marks(harness)) == 1
        assert harness.dead_letters == []


@pytest.mark.usefixtures("quick_retries")
async def test_an_unavailable_store_is_waited_for_beyond_the_retry_attempts(
    start_enforcement: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unavailable store is no reason to set an event aside: it is tried again until
    the store is back (the consumer shows as stalled meanwhile), then applied once."""
    async with start_enforcement(consumer_retry_attempts=2) as harness:
        store = harness.context.store
        health = harness.context.grant_events.health
        real = store.save_grants
        seen: list[str | None] = []

        def down_then_back(*args: Any, **kwargs: Any) -> Any:
            seen.append(health.describe())
            if len(seen) <= 6:
                raise OperationalError("INSERT", {}, Exception("database is locked"))
            return real(*args, **kwargs)

        monkeypatch.setattr(store, "save_grants", down_then_back)
        await harness.publish(golden_bytes("grant.issued"))
        assert all((s or "").startswith("stalled: store unavailable") for s in seen[1:])
        assert health.describe() is None
        assert harness.dead_letters == []
        assert len(processed_marks(harness)) == 1
        assert (await get_grant(harness))["version"] == 1


@pytest.mark.usefixtures("quick_retries")
async def test_an_event_that_keeps_failing_is_dead_lettered_failed_and_the_next_applied(
    start_enforcement: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-transient error: the record is tried consumer_retry_attempts times, then set
    aside with reason failed and the error, and the consumer moves on."""
    async with start_enforcement(consumer_retry_attempts=3) as harness:
        store = harness.context.store
        real = store.save_grants
        calls = {"n": 0}

        def broken(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            raise ValueError("a bug meets this event")

        monkeypatch.setattr(store, "save_grants", broken)
        await harness.publish(golden_bytes("grant.issued"))  # returns: the offset moves on
        assert calls["n"] == 3
        [letter] = harness.dead_letters
        assert letter.event.data.reason == "failed"
        assert letter.event.data.error == "ValueError: a bug meets this event"
        assert codec.original_value(letter.event.data) == golden_bytes("grant.issued")
        assert processed_marks(harness) == []

        monkeypatch.setattr(store, "save_grants", real)  # the bug fixed; the entry re-driven
        await harness.publish(golden_bytes("grant.issued"))
        assert len(processed_marks(harness)) == 1
        assert (await get_grant(harness))["version"] == 1


@pytest.mark.usefixtures("quick_retries")
async def test_a_grant_the_store_refuses_does_not_make_the_next_events_fail(
    start_enforcement: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refused grant's view stays in memory; it must not ride along with the next
    event's write, or every grant event after it would be set aside too."""
    async with start_enforcement(consumer_retry_attempts=2) as harness:
        store = harness.context.store
        real = store.save_grants

        def refuses_one(views: Any, **kwargs: Any) -> Any:
            if any(view.grant_id == "grt_refused" for view in views):
                raise ValueError("the store refuses grt_refused")
            return real(views, **kwargs)

        monkeypatch.setattr(store, "save_grants", refuses_one)

        def issued(grant_id: str) -> bytes:
            event = json.loads(golden_bytes("grant.issued"))
            event["event_id"] = str(uuid.uuid4())
            event["key"] = event["data"]["grant_id"] = grant_id
            return json.dumps(event).encode()

        await harness.publish(issued("grt_refused"))
        await harness.publish(issued("grt_next"))
        [letter] = harness.dead_letters
        assert letter.event.data.reason == "failed"
        assert len(processed_marks(harness)) == 1
        assert [view.grant_id for view in store.load_grants()] == ["grt_next"]


async def test_a_record_over_the_size_limit_is_dead_lettered_too_large(
    start_enforcement: Starter,
) -> None:
    async with start_enforcement(record_max_bytes=64 * 1024) as harness:
        value = b"\x01" * (64 * 1024 + 1)
        await harness.publish(value)
        [letter] = harness.dead_letters
        assert letter.event.data.reason == "too_large"
        assert "65537 bytes" in letter.event.data.error
        assert letter.event.data.payload_encoding == "base64"  # control bytes: not as text
        assert codec.original_value(letter.event.data) == value
        await harness.publish(golden_bytes("grant.issued"))
        assert len(processed_marks(harness)) == 1


# --------------------------------------------------------------------------- poison


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{this is not json", "bad_json"),
        (golden_with("grant.issued", type="grant.transferred"), "unknown_type"),
        (golden_with("access.recorded"), "unknown_type"),
        (golden_with("grant.issued", version=2), "unsupported_version"),
        (golden_with("grant.issued", data={"grant_id": GRANT_ID}), "invalid"),
    ],
    ids=["bad_json", "unknown_type", "wrong_topic", "future_version", "invalid"],
)
async def test_a_poison_message_is_dead_lettered_and_processing_continues(
    enforcement: EnforcementHarness, value: bytes, reason: str
) -> None:
    await enforcement.publish(value, key="poison-key")
    await enforcement.publish(golden_bytes("grant.issued"))

    [letter] = enforcement.dead_letters
    dead = letter.event
    assert letter.key == topics.GRANTS.encode()
    assert letter.headers["content-type"] == "application/json"
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", letter.headers["traceparent"])
    assert dead.key == topics.GRANTS
    assert dead.producer == "enforcement"
    assert dead.data.reason == reason
    assert dead.data.source_topic == topics.GRANTS
    assert dead.data.consumer == "enforcement"
    assert dead.data.source_key == "poison-key"
    assert (dead.data.source_partition, dead.data.source_offset) == (0, 0)  # its position
    assert dead.data.payload.encode() == value
    assert dead.data.error
    view = await get_grant(enforcement)
    assert view["version"] == 1
    assert processed_marks(enforcement) == ["7c0b6c1e-3c55-4d1a-9f0e-2b1f0f3f9a10"]


async def test_bad_json_and_unknown_type_each_give_one_dead_letter(
    enforcement: EnforcementHarness,
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await enforcement.publish(b"\x00\xffnot json at all", traceparent=traceparent)
    await enforcement.publish(golden_with("grant.issued", type="grant.transferred"))
    await enforcement.publish(golden_bytes("grant.issued"))

    dead = [letter.event.data for letter in enforcement.dead_letters]
    assert [(d.reason, d.source_topic) for d in dead] == [
        ("bad_json", topics.GRANTS),
        ("unknown_type", topics.GRANTS),
    ]
    assert "grant.transferred" in dead[1].error
    # the trace the poison message came with follows it to the dead-letter topic
    assert enforcement.dead_letters[0].headers["traceparent"] == traceparent
    assert dead[0].headers["traceparent"] == traceparent
    # bytes that are not UTF-8 are kept, base64-encoded, so they can be re-driven
    assert dead[0].payload_encoding == "base64"
    assert enforcement.context.grant_events.dead_lettered == 2
    view = await get_grant(enforcement)
    assert (view["version"], view["status"]) == (1, "active")


# --------------------------------------------------------------------------- HTTP


async def test_the_grant_view_needs_a_token(enforcement: EnforcementHarness) -> None:
    await enforcement.publish(golden_bytes("grant.issued"))
    response = await enforcement.client.get(f"/v1/grants/{GRANT_ID}")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    response = await enforcement.client.get(
        f"/v1/grants/{GRANT_ID}", headers={"Authorization": "Bearer wrong"}
    )
    assert response.status_code == 401
