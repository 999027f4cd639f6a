"""The envelope: key defaults, immutability, timestamps."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from carveout_contracts import topics
from carveout_contracts.codec import decode
from carveout_contracts.events import (
    EVENT_BY_TYPE,
    EVENT_CLASSES,
    AccessRecorded,
    CarveoutRevoked,
    ConditionBreached,
    Envelope,
    GrantIssued,
    MessageDeadLettered,
    event_type,
)

Golden = Callable[[str], dict[str, Any]]

GRANT = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"


def build(golden: Golden, etype: str, **changes: Any) -> Envelope:
    """Parse a golden example without its ``key``, so the key must come from ``data``."""
    raw = golden(etype)
    del raw["key"]
    raw["data"].update(changes)
    return EVENT_BY_TYPE[etype].model_validate(raw)


@pytest.mark.parametrize(
    "etype", ["grant.issued", "grant.amended", "grant.suspended", "grant.reinstated"]
)
def test_grant_events_are_keyed_by_grant_id(golden: Golden, etype: str) -> None:
    event = build(golden, etype, grant_id="grt_other")
    assert event.key == "grt_other"
    assert event.TOPIC == topics.GRANTS


def test_carveout_revoked_is_keyed_by_its_first_grant(golden: Golden) -> None:
    event = build(golden, "carveout.revoked", grant_ids=["grt_a", "grt_b"])
    assert isinstance(event, CarveoutRevoked)
    assert event.key == "grt_a"


def test_access_recorded_is_keyed_by_grantee(golden: Golden) -> None:
    event = build(golden, "access.recorded", grantee_id="org-other")
    assert event.key == "org-other"
    assert event.TOPIC == topics.ACCESS


def test_condition_breached_is_keyed_by_grant_then_grantee(golden: Golden) -> None:
    assert build(golden, "condition.breached").key == GRANT
    unmatched = build(golden, "condition.breached", grant_id=None, grant_version=None)
    assert unmatched.key == "org-netsec"
    assert unmatched.TOPIC == topics.BREACHES


@pytest.mark.parametrize("etype", ["notification.delivered", "notification.failed"])
def test_notifications_are_keyed_by_subscription(golden: Golden, etype: str) -> None:
    event = build(golden, etype, subscription_id="sub_x")
    assert event.key == "sub_x"
    assert event.TOPIC == topics.NOTIFICATIONS


def test_dead_letters_are_keyed_by_source_topic(golden: Golden) -> None:
    event = build(golden, "message.dead_lettered", source_topic=topics.BREACHES)
    assert event.key == topics.BREACHES
    assert event.TOPIC == topics.DEADLETTER


def test_key_defaults_from_a_data_model_too(golden: Golden) -> None:
    template = decode(topics.ACCESS, json.dumps(golden("access.recorded")))
    event = AccessRecorded(producer="gateway", data=template.data)
    assert event.key == "org-netsec"
    dead = decode(topics.DEADLETTER, json.dumps(golden("message.dead_lettered")))
    assert MessageDeadLettered(producer="grant", data=dead.data).key == topics.ACCESS


def test_explicit_key_is_kept(golden: Golden) -> None:
    raw = golden("grant.issued")
    raw["key"] = "explicit"
    assert GrantIssued.model_validate(raw).key == "explicit"


def test_defaults_fill_event_id_occurred_at_type_and_version(golden: Golden) -> None:
    data = decode(topics.GRANTS, json.dumps(golden("grant.issued"))).data
    before = datetime.now(UTC)
    first = GrantIssued(producer="grant", data=data)
    second = GrantIssued(producer="grant", data=data)
    assert first.type == "grant.issued"
    assert first.version == 1
    assert isinstance(first.event_id, UUID)
    assert first.event_id.version == 4
    assert first.event_id != second.event_id
    assert first.occurred_at.tzinfo is not None
    assert first.occurred_at.utcoffset() == timedelta(0)
    assert before <= first.occurred_at <= datetime.now(UTC)
    assert json.loads(first.model_dump_json())["occurred_at"].endswith("Z")


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=event_type)
def test_events_are_frozen(golden: Golden, cls: type[Envelope]) -> None:
    event = cls.model_validate(golden(event_type(cls)))
    with pytest.raises(ValidationError, match="frozen"):
        event.key = "changed"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        event.data = None  # type: ignore[misc]
    first_field = next(iter(type(event.data).model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(event.data, first_field, "changed")


def test_nested_parts_are_frozen(golden: Golden) -> None:
    event = GrantIssued.model_validate(golden("grant.issued"))
    with pytest.raises(ValidationError, match="frozen"):
        event.data.grantee.name = "Someone Else"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        event.data.conditions[0].severity = "warning"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        event.data.breach_policy.window_seconds = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-06-28T14:00:00Z", "2026-06-28T14:00:00Z"),
        ("2026-06-28T14:00:00+00:00", "2026-06-28T14:00:00Z"),
        ("2026-06-28T16:00:00+02:00", "2026-06-28T14:00:00Z"),
        ("2026-06-28T09:30:00-04:30", "2026-06-28T14:00:00Z"),
        ("2026-06-28T14:00:00.250Z", "2026-06-28T14:00:00.250000Z"),
    ],
)
def test_occurred_at_is_normalised_to_utc_with_z(golden: Golden, given: str, expected: str) -> None:
    raw = golden("access.recorded")
    raw["occurred_at"] = given
    event = decode(topics.ACCESS, json.dumps(raw))
    assert event.occurred_at.tzinfo == UTC
    assert json.loads(event.model_dump_json())["occurred_at"] == expected


def test_data_timestamps_are_normalised_too(golden: Golden) -> None:
    raw = golden("grant.issued")
    raw["data"]["valid_from"] = "2026-06-28T02:00:00+02:00"
    event = decode(topics.GRANTS, json.dumps(raw))
    assert json.loads(event.model_dump_json())["data"]["valid_from"] == "2026-06-28T00:00:00Z"


def test_python_datetimes_in_other_zones_become_utc(golden: Golden) -> None:
    data = decode(topics.GRANTS, json.dumps(golden("grant.issued"))).data
    india = timezone(timedelta(hours=5, minutes=30))
    event = GrantIssued(
        producer="grant", data=data, occurred_at=datetime(2026, 6, 28, 19, 30, tzinfo=india)
    )
    assert event.occurred_at == datetime(2026, 6, 28, 14, 0, tzinfo=UTC)
    assert event.occurred_at.tzinfo == UTC


def test_naive_datetime_is_rejected(golden: Golden) -> None:
    data = decode(topics.GRANTS, json.dumps(golden("grant.issued"))).data
    with pytest.raises(ValidationError, match="timezone"):
        GrantIssued(producer="grant", data=data, occurred_at=datetime(2026, 6, 28, 14, 0))


def test_condition_breached_model(golden: Golden) -> None:
    event = decode(topics.BREACHES, json.dumps(golden("condition.breached")))
    assert isinstance(event, ConditionBreached)
    assert [v.condition_id for v in event.data.violations] == ["countries", "embargo"]
    raw = golden("condition.breached")
    raw["data"]["violations"] = []
    with pytest.raises(ValidationError, match="violations"):
        ConditionBreached.model_validate(raw)


def test_an_event_class_names_its_topic_and_key() -> None:
    with pytest.raises(TypeError, match="'topic' and 'key'"):

        class Unrouted(Envelope):
            """Names neither where it is published nor what keys it."""
