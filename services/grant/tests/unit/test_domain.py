"""The grant service's pure domain: issuing a grant and folding its events into state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from carveout_contracts import (
    CarveoutRevoked,
    GrantAmended,
    GrantIssued,
    GrantReinstated,
    GrantSuspended,
    decode,
    topics,
)
from carveout_contracts.events import Envelope
from carveout_grant.domain import Grant, GrantRequest, apply, issue, new_grant_id

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
T0 = datetime(2026, 6, 28, 14, 0, tzinfo=UTC)


def golden(event_type: str) -> Any:
    return decode(topics.GRANTS, (GOLDEN / f"{event_type}.v1.json").read_bytes())


def request_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "carveout_id": "co-mythos-2026",
        "model_id": "mythos-preview",
        "grantee": {
            "id": "org-netsec",
            "name": "Example Network Security Inc.",
            "contacts": [{"kind": "webhook", "address": "https://hooks.example.com/carveout"}],
        },
        "valid_from": "2026-06-28T00:00:00Z",
        "valid_until": "2026-12-31T00:00:00Z",
        "conditions": [
            {"id": "regions", "kind": "deployment_regions", "allow": ["us-east"]},
            {"id": "cap", "kind": "usage_cap", "units": 1000, "window": "day"},
        ],
        "breach_policy": {"revoke_after_critical": 3, "window_seconds": 3600},
    }
    return body | overrides


def issued_grant(now: datetime = T0) -> tuple[GrantIssued, Grant]:
    event = issue(
        GrantRequest.model_validate(request_body()), grant_id=GRANT_ID, by="regulator", now=now
    )
    return event, apply(None, event)


def status_change(
    cls: type[GrantSuspended | GrantReinstated], version: int, at: datetime
) -> GrantSuspended | GrantReinstated:
    return cls.model_validate(
        {
            "producer": "grant",
            "occurred_at": at,
            "data": {
                "grant_id": GRANT_ID,
                "version": version,
                "reason": "because",
                "by": "regulator",
                "effective_at": at,
            },
        }
    )


def amended(version: int, at: datetime, units: int = 5000) -> GrantAmended:
    return GrantAmended.model_validate(
        {
            "producer": "grant",
            "occurred_at": at,
            "data": {
                "grant_id": GRANT_ID,
                "version": version,
                "valid_from": "2026-06-28T00:00:00Z",
                "valid_until": "2027-06-28T00:00:00Z",
                "conditions": [
                    {"id": "cap", "kind": "usage_cap", "units": units, "window": "hour"}
                ],
                "breach_policy": {"suspend_after_critical": 1, "window_seconds": 60},
                "amended_by": "regulator",
                "reason": "new terms",
                "effective_at": at,
            },
        }
    )


def revoked(at: datetime, versions: dict[str, int] | None = None) -> CarveoutRevoked:
    return CarveoutRevoked.model_validate(
        {
            "producer": "grant",
            "occurred_at": at,
            "data": {
                "carveout_id": "co-mythos-2026",
                "grant_ids": [GRANT_ID],
                "reason": "revoked",
                "revoked_by": "regulator",
                "effective_at": at,
                "grant_versions": versions or {},
            },
        }
    )


# --------------------------------------------------------------------------- issue


def test_issue_builds_the_grant_issued_event() -> None:
    event, _ = issued_grant()
    assert isinstance(event, GrantIssued)
    assert event.type == "grant.issued"
    assert event.producer == "grant"
    assert event.key == GRANT_ID
    assert event.occurred_at == T0
    assert event.TOPIC == topics.GRANTS
    assert event.data.grant_id == GRANT_ID
    assert event.data.version == 1
    assert event.data.issued_by == "regulator"
    assert [c.id for c in event.data.conditions] == ["regions", "cap"]
    # what goes on the wire is a valid grant.issued for every consumer
    assert decode(topics.GRANTS, event.model_dump_json()) == event


def test_apply_of_issued_gives_version_1_active() -> None:
    event, grant = issued_grant()
    assert grant.grant_id == GRANT_ID
    assert grant.version == 1
    assert grant.lifecycle == "active"
    assert grant.status_at(T0) == "active"
    assert grant.grantee.id == "org-netsec"
    assert grant.model_id == "mythos-preview"
    assert grant.issued_by == "regulator"
    assert grant.issued_at == grant.updated_at == T0
    assert grant.conditions == event.data.conditions
    assert grant.breach_policy.revoke_after_critical == 3


def test_request_rejects_a_window_that_ends_before_it_starts() -> None:
    with pytest.raises(ValidationError, match="valid_until must be later than valid_from"):
        GrantRequest.model_validate(request_body(valid_until="2026-06-01T00:00:00Z"))


def test_request_rejects_duplicate_condition_ids() -> None:
    conditions = [
        {"id": "x", "kind": "purposes", "allow": ["a"]},
        {"id": "x", "kind": "purposes", "allow": ["b"]},
    ]
    with pytest.raises(ValidationError, match="x"):
        GrantRequest.model_validate(request_body(conditions=conditions))


def test_new_grant_ids_are_prefixed_unique_ulids() -> None:
    ids = {new_grant_id() for _ in range(200)}
    assert len(ids) == 200
    for grant_id in ids:
        assert grant_id.startswith("grt_")
        assert len(grant_id) == 4 + 26
        assert set(grant_id[4:]) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


# --------------------------------------------------------------------------- lifecycle


def test_suspend_then_reinstate_bumps_version_and_status() -> None:
    _, grant = issued_grant()
    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    suspended = apply(grant, status_change(GrantSuspended, 2, t1))
    assert (suspended.version, suspended.lifecycle) == (2, "suspended")
    assert suspended.status_at(t1) == "suspended"
    assert suspended.updated_at == t1
    assert suspended.issued_at == T0
    reinstated = apply(suspended, status_change(GrantReinstated, 3, t2))
    assert (reinstated.version, reinstated.lifecycle) == (3, "active")
    assert reinstated.updated_at == t2
    # apply is pure: the earlier states are untouched
    assert (grant.version, grant.lifecycle) == (1, "active")
    assert (suspended.version, suspended.lifecycle) == (2, "suspended")


def test_amend_replaces_terms_and_keeps_status() -> None:
    _, grant = issued_grant()
    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    suspended = apply(grant, status_change(GrantSuspended, 2, t1))
    after = apply(suspended, amended(3, t2, units=777))
    assert after.version == 3
    assert after.lifecycle == "suspended"
    assert after.valid_until == datetime(2027, 6, 28, tzinfo=UTC)
    assert [(c.id, c.units) for c in after.conditions] == [("cap", 777)]  # type: ignore[union-attr]
    assert after.breach_policy.suspend_after_critical == 1
    assert after.breach_policy.revoke_after_critical is None
    assert after.updated_at == t2
    # identity of the grant does not change with its terms
    assert (after.grant_id, after.grantee, after.model_id, after.issued_by) == (
        grant.grant_id,
        grant.grantee,
        grant.model_id,
        grant.issued_by,
    )


def test_revoke_takes_the_version_from_grant_versions() -> None:
    _, grant = issued_grant()
    t1 = T0 + timedelta(days=3)
    after = apply(grant, revoked(t1, {GRANT_ID: 7, "grt_other": 2}))
    assert (after.version, after.lifecycle) == (7, "revoked")
    assert after.status_at(t1) == "revoked"
    assert after.updated_at == t1


def test_revoke_without_grant_versions_bumps_the_version_by_one() -> None:
    _, grant = issued_grant()
    after = apply(grant, revoked(T0 + timedelta(days=3)))
    assert (after.version, after.lifecycle) == (2, "revoked")


def test_golden_history_folds_to_the_revoked_grant() -> None:
    history = [
        golden(t)
        for t in (
            "grant.issued",
            "grant.amended",
            "grant.suspended",
            "grant.reinstated",
            "carveout.revoked",
        )
    ]
    grant: Grant | None = None
    seen = []
    for event in history:
        grant = apply(grant, event)
        seen.append((grant.version, grant.lifecycle))
    assert seen == [(1, "active"), (2, "active"), (3, "suspended"), (4, "active"), (5, "revoked")]
    assert grant is not None
    assert [c.units for c in grant.conditions if c.kind == "usage_cap"] == [2_000_000]


@pytest.mark.parametrize(
    "event_type", ["grant.amended", "grant.suspended", "grant.reinstated", "carveout.revoked"]
)
def test_apply_of_a_non_issued_event_on_nothing_raises(event_type: str) -> None:
    with pytest.raises(ValueError, match=f"{event_type} for a grant that was never issued"):
        apply(None, golden(event_type))


# --------------------------------------------------------------------------- status_at


def test_status_at_is_expired_from_valid_until() -> None:
    _, grant = issued_grant()
    end = grant.valid_until
    assert grant.status_at(end - timedelta(microseconds=1)) == "active"
    assert grant.status_at(end) == "expired"
    assert grant.status_at(end + timedelta(days=30)) == "expired"
    assert grant.lifecycle == "active"  # expiry is computed, never stored


def test_status_at_keeps_suspended_and_revoked_after_valid_until() -> None:
    _, grant = issued_grant()
    later = grant.valid_until + timedelta(days=1)
    suspended = apply(grant, status_change(GrantSuspended, 2, T0 + timedelta(days=1)))
    assert suspended.status_at(later) == "suspended"
    gone = apply(grant, revoked(T0 + timedelta(days=1), {GRANT_ID: 2}))
    assert gone.status_at(later) == "revoked"


# --------------------------------------------------------------------------- properties

actions = st.lists(st.sampled_from(["suspend", "reinstate", "amend", "revoke"]), max_size=12)


@given(actions)
def test_fold_tracks_the_last_version_and_status(steps: list[str]) -> None:
    """Any history of regulator actions folds to the last version and the last status."""
    _, grant = issued_grant()
    expected_status = "active"
    at = T0
    for version, step in enumerate(steps, start=2):
        at += timedelta(hours=1)
        event: Envelope
        if step == "suspend":
            event, expected_status = status_change(GrantSuspended, version, at), "suspended"
        elif step == "reinstate":
            event, expected_status = status_change(GrantReinstated, version, at), "active"
        elif step == "amend":
            event = amended(version, at)
        else:
            event, expected_status = revoked(at, {GRANT_ID: version}), "revoked"
        before = grant
        grant = apply(grant, event)
        assert grant.version == version > before.version
        assert grant.updated_at == at
    assert grant.version == len(steps) + 1
    assert grant.lifecycle == expected_status
    assert (grant.grant_id, grant.issued_at, grant.issued_by) == (GRANT_ID, T0, "regulator")


@given(st.datetimes(timezones=st.just(UTC)))
def test_status_at_is_expired_exactly_when_an_active_grant_is_past_its_window(
    moment: datetime,
) -> None:
    _, grant = issued_grant()
    assert (grant.status_at(moment) == "expired") == (moment >= grant.valid_until)
    assert grant.status_at(moment) in ("active", "expired")


def test_golden_issued_matches_the_request_shape() -> None:
    """The demo request, issued, carries the same terms as the golden grant.issued example."""
    raw = json.loads((GOLDEN / "grant.issued.v1.json").read_text())["data"]
    body = {k: raw[k] for k in GrantRequest.model_fields}
    event = issue(
        GrantRequest.model_validate(body), grant_id=raw["grant_id"], by="regulator", now=T0
    )
    assert event.data == golden("grant.issued").data
