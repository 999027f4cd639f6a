"""Notification consuming ``carveout.grants``: contacts, idempotence, dead letters, HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from carveout_contracts import codec, topics
from carveout_notification.store import GrantContactsRecord, ProcessedEvent
from carveout_runtime import retries

from .conftest import AUDITOR, NotificationHarness, golden_bytes

GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
ISSUED_ID = "7c0b6c1e-3c55-4d1a-9f0e-2b1f0f3f9a10"
SUSPENDED_ID = "4b8d2f6a-0c1e-4a3b-9d5f-7e8a9b0c1d2e"
Starter = Callable[..., AbstractAsyncContextManager[NotificationHarness]]


def processed_marks(harness: NotificationHarness) -> list[str]:
    with Session(harness.context.store.engine) as session:
        return list(session.exec(select(ProcessedEvent.event_id)).all())


def stored(harness: NotificationHarness) -> dict[str, tuple[int, str]]:
    with Session(harness.context.store.engine) as session:
        rows = session.exec(select(GrantContactsRecord)).all()
    return {r.grant_id: (r.version, r.status) for r in rows}


async def get_contacts(harness: NotificationHarness, grant_id: str = GRANT_ID) -> dict[str, Any]:
    response = await harness.client.get(f"/v1/grants/{grant_id}/contacts", headers=AUDITOR)
    assert response.status_code == 200, response.text
    contacts: dict[str, Any] = response.json()
    return contacts


def golden_with(event_type: str, **changes: Any) -> bytes:
    raw = json.loads(golden_bytes(event_type))
    raw.update(changes)
    return json.dumps(raw).encode()


# --------------------------------------------------------------------------- projection


async def test_an_issued_grant_gives_its_contacts_over_http(
    notification: NotificationHarness,
) -> None:
    response = await notification.client.get(f"/v1/grants/{GRANT_ID}/contacts", headers=AUDITOR)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert GRANT_ID in response.json()["message"]

    await notification.publish(golden_bytes("grant.issued"))

    contacts = await get_contacts(notification)
    assert contacts["grant_id"] == GRANT_ID
    assert (contacts["grantee_id"], contacts["grantee_name"]) == (
        "org-netsec",
        "Example Network Security Inc.",
    )
    assert (contacts["carveout_id"], contacts["model_id"]) == ("co-mythos-2026", "mythos-preview")
    assert (contacts["version"], contacts["status"]) == (1, "active")
    assert contacts["contacts"] == [
        {"kind": "webhook", "address": "https://hooks.example.com/carveout"}
    ]
    assert stored(notification) == {GRANT_ID: (1, "active")}
    assert processed_marks(notification) == [ISSUED_ID]


async def test_the_same_event_five_times_is_processed_once(
    notification: NotificationHarness,
) -> None:
    for _ in range(5):
        await notification.publish(golden_bytes("grant.issued"))
    for _ in range(5):
        await notification.publish(golden_bytes("grant.suspended"))

    assert sorted(processed_marks(notification)) == sorted([ISSUED_ID, SUSPENDED_ID])
    handler = notification.context.consumers[topics.GRANTS]
    assert (handler.processed, handler.duplicates, handler.dead_lettered) == (2, 8, 0)
    contacts = await get_contacts(notification)
    assert (contacts["version"], contacts["status"]) == (3, "suspended")
    assert stored(notification) == {GRANT_ID: (3, "suspended")}


async def test_a_suspension_after_issue_shows_suspended_then_reinstated(
    notification: NotificationHarness,
) -> None:
    await notification.publish(golden_bytes("grant.issued"))
    await notification.publish(golden_bytes("grant.suspended"))
    contacts = await get_contacts(notification)
    assert (contacts["version"], contacts["status"]) == (3, "suspended")
    assert contacts["updated_at"] == "2026-08-03T09:20:00Z"

    await notification.publish(golden_bytes("grant.reinstated"))
    contacts = await get_contacts(notification)
    assert (contacts["version"], contacts["status"]) == (4, "active")


async def test_the_golden_history_ends_revoked(notification: NotificationHarness) -> None:
    for event_type in (
        "grant.issued",
        "grant.amended",
        "grant.suspended",
        "grant.reinstated",
        "carveout.revoked",
    ):
        await notification.publish(golden_bytes(event_type))
    contacts = await get_contacts(notification)
    assert (contacts["version"], contacts["status"]) == (5, "revoked")
    assert len(processed_marks(notification)) == 5


async def test_an_event_for_a_grant_never_issued_is_marked_and_skipped(
    notification: NotificationHarness,
) -> None:
    await notification.publish(golden_bytes("carveout.revoked"))
    assert processed_marks(notification) == ["8e3f5a7c-9b1d-4f2e-a6c8-0d2e4f6a8b0c"]
    assert stored(notification) == {}


async def test_the_projection_survives_a_restart(start_notification: Starter) -> None:
    async with start_notification() as first:
        await first.publish(golden_bytes("grant.issued"))
        await first.publish(golden_bytes("grant.suspended"))
    async with start_notification() as second:
        contacts = await get_contacts(second)
        assert (contacts["version"], contacts["status"]) == (3, "suspended")
        await second.publish(golden_bytes("grant.issued"))
        assert second.context.consumers[topics.GRANTS].duplicates == 1
        assert len(processed_marks(second)) == 2


# --------------------------------------------------------------------------- store failures


def failing(real: Callable[..., Any], failures: int) -> Callable[..., Any]:
    """``real``, failing like a database that is down for its first ``failures`` calls."""
    calls = {"n": 0}

    def call(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    return call


async def test_a_transient_store_failure_is_retried(
    start_notification: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with start_notification(store_retry_attempts=3) as harness:
        store = harness.context.store
        monkeypatch.setattr(store, "record_event", failing(store.record_event, failures=2))
        await harness.publish(golden_bytes("grant.issued"))
        assert (await get_contacts(harness))["version"] == 1
        assert len(processed_marks(harness)) == 1
        assert harness.dead_letters == []


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff in milliseconds, so that many attempts take no time."""
    monkeypatch.setattr(retries, "RETRY_WAIT_INITIAL_S", 0.001)
    monkeypatch.setattr(retries, "RETRY_WAIT_MAX_S", 0.002)
    monkeypatch.setattr(retries, "RETRY_JITTER_S", 0.0)


@pytest.mark.usefixtures("quick_retries")
async def test_an_unavailable_store_is_waited_for_beyond_the_retry_attempts(
    start_notification: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unavailable store is no reason to set an event aside: it is tried again until
    the store is back (the consumer shows as stalled meanwhile), then applied once."""
    async with start_notification(consumer_retry_attempts=2) as harness:
        store = harness.context.store
        health = harness.context.consumers[topics.GRANTS].health
        real = store.record_event
        seen: list[str | None] = []

        def down_then_back(*args: Any, **kwargs: Any) -> Any:
            seen.append(health.describe())
            if len(seen) <= 6:
                raise OperationalError("INSERT", {}, Exception("database is locked"))
            return real(*args, **kwargs)

        monkeypatch.setattr(store, "record_event", down_then_back)
        await harness.publish(golden_bytes("grant.issued"))
        assert all((s or "").startswith("stalled: store unavailable") for s in seen[1:])
        assert health.describe() is None
        assert harness.dead_letters == []
        assert len(processed_marks(harness)) == 1
        assert (await get_contacts(harness))["version"] == 1


@pytest.mark.usefixtures("quick_retries")
async def test_an_event_that_keeps_failing_is_dead_lettered_failed_and_the_next_applied(
    start_notification: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-transient error: the record is tried consumer_retry_attempts times, then set
    aside with reason failed and the error, and the consumer moves on."""
    async with start_notification(consumer_retry_attempts=3) as harness:
        store = harness.context.store
        real = store.record_event
        calls = {"n": 0}

        def broken(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            raise ValueError("a bug meets this event")

        monkeypatch.setattr(store, "record_event", broken)
        await harness.publish(golden_bytes("grant.issued"))  # returns: the offset moves on
        assert calls["n"] == 3
        [letter] = harness.dead_letters
        assert letter.event.data.reason == "failed"
        assert letter.event.data.error == "ValueError: a bug meets this event"
        assert codec.original_value(letter.event.data) == golden_bytes("grant.issued")
        assert processed_marks(harness) == []

        monkeypatch.setattr(store, "record_event", real)  # the bug fixed; the entry re-driven
        await harness.publish(golden_bytes("grant.issued"))
        assert len(processed_marks(harness)) == 1
        assert (await get_contacts(harness))["version"] == 1


async def test_a_record_over_the_size_limit_is_dead_lettered_too_large(
    start_notification: Starter,
) -> None:
    async with start_notification(record_max_bytes=64 * 1024) as harness:
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
        (b"not json at all", "bad_json"),
        (golden_with("grant.issued", type="grant.transferred"), "unknown_type"),
        (golden_with("condition.breached"), "unknown_type"),
        (golden_with("grant.issued", version=2), "unsupported_version"),
        (golden_with("grant.issued", data={"grant_id": GRANT_ID}), "invalid"),
    ],
    ids=["bad_json", "unknown_type", "wrong_topic", "future_version", "invalid"],
)
async def test_a_poison_message_is_dead_lettered_and_processing_continues(
    notification: NotificationHarness, value: bytes, reason: str
) -> None:
    await notification.publish(value, key="poison-key")
    await notification.publish(golden_bytes("grant.issued"))

    [letter] = notification.dead_letters
    dead = letter.event
    assert letter.key == topics.GRANTS.encode()
    assert letter.headers["content-type"] == "application/json"
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", letter.headers["traceparent"])
    assert dead.producer == "notification"
    assert dead.data.reason == reason
    assert dead.data.source_topic == topics.GRANTS
    assert dead.data.consumer == "notification"
    assert dead.data.source_key == "poison-key"
    assert (dead.data.source_partition, dead.data.source_offset) == (0, 0)  # its position
    assert dead.data.payload.encode() == value
    assert (await get_contacts(notification))["version"] == 1
    assert processed_marks(notification) == [ISSUED_ID]


async def test_bad_json_and_unknown_type_each_give_one_dead_letter(
    notification: NotificationHarness,
) -> None:
    await notification.publish(b"{")
    await notification.publish(golden_with("grant.issued", type="grant.transferred"))
    await notification.publish(golden_bytes("grant.issued"))

    dead = [letter.event.data for letter in notification.dead_letters]
    assert [(d.reason, d.source_topic) for d in dead] == [
        ("bad_json", topics.GRANTS),
        ("unknown_type", topics.GRANTS),
    ]
    assert notification.context.consumers[topics.GRANTS].dead_lettered == 2
    contacts = await get_contacts(notification)
    assert (contacts["version"], contacts["status"]) == (1, "active")


# --------------------------------------------------------------------------- HTTP


async def test_contacts_need_a_token(notification: NotificationHarness) -> None:
    await notification.publish(golden_bytes("grant.issued"))
    response = await notification.client.get(f"/v1/grants/{GRANT_ID}/contacts")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    regulator = await notification.client.get(
        f"/v1/grants/{GRANT_ID}/contacts", headers={"Authorization": "Bearer r"}
    )
    assert regulator.status_code == 200
