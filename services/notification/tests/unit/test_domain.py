"""Notification's pure projection: who is to be told about each grant, and its status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carveout_contracts import (
    CarveoutRevoked,
    Contact,
    GrantAmended,
    GrantIssued,
    GrantReinstated,
    GrantSuspended,
    decode,
    topics,
)
from carveout_notification.domain import GrantContacts, affected_grants, apply

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"  # the golden grant
T0 = datetime(2026, 6, 28, 14, 0, tzinfo=UTC)


def golden(event_type: str) -> Any:
    return decode(topics.GRANTS, (GOLDEN / f"{event_type}.v1.json").read_bytes())


def issued(grant_id: str = GRANT_ID) -> GrantIssued:
    return GrantIssued.model_validate(
        {
            "producer": "grant",
            "occurred_at": T0,
            "data": {
                "grant_id": grant_id,
                "carveout_id": "co-mythos-2026",
                "grantee": {
                    "id": "org-netsec",
                    "name": "Example Network Security Inc.",
                    "contacts": [
                        {"kind": "webhook", "address": "https://hooks.example.com/carveout"},
                        {"kind": "email", "address": "security@netsec.example.com"},
                    ],
                },
                "model_id": "mythos-preview",
                "valid_from": "2026-06-28T00:00:00Z",
                "valid_until": "2026-12-31T00:00:00Z",
                "issued_by": "regulator",
            },
        }
    )


def status_change(
    cls: type[GrantSuspended | GrantReinstated], version: int, moment: datetime
) -> GrantSuspended | GrantReinstated:
    return cls.model_validate(
        {
            "producer": "grant",
            "occurred_at": moment,
            "data": {
                "grant_id": GRANT_ID,
                "version": version,
                "reason": "because",
                "by": "regulator",
                "effective_at": moment,
            },
        }
    )


def amended(version: int, moment: datetime) -> GrantAmended:
    return GrantAmended.model_validate(
        {
            "producer": "grant",
            "occurred_at": moment,
            "data": {
                "grant_id": GRANT_ID,
                "version": version,
                "valid_from": "2026-06-28T00:00:00Z",
                "valid_until": "2027-06-28T00:00:00Z",
                "amended_by": "regulator",
                "reason": "new terms",
                "effective_at": moment,
            },
        }
    )


def revoked(
    moment: datetime, grant_ids: list[str], versions: dict[str, int] | None = None
) -> CarveoutRevoked:
    return CarveoutRevoked.model_validate(
        {
            "producer": "grant",
            "occurred_at": moment,
            "data": {
                "carveout_id": "co-mythos-2026",
                "grant_ids": grant_ids,
                "reason": "revoked",
                "revoked_by": "regulator",
                "effective_at": moment,
                "grant_versions": versions or {},
            },
        }
    )


def contacts_of(grant_id: str = GRANT_ID) -> GrantContacts:
    view = apply(None, issued(grant_id), grant_id)
    assert view is not None
    return view


# --------------------------------------------------------------------------- grant.issued


def test_issued_gives_the_grantees_contacts() -> None:
    view = contacts_of()
    assert view.grant_id == GRANT_ID
    assert (view.carveout_id, view.model_id) == ("co-mythos-2026", "mythos-preview")
    assert (view.grantee_id, view.grantee_name) == ("org-netsec", "Example Network Security Inc.")
    assert (view.status, view.version) == ("active", 1)
    assert view.contacts == [
        Contact(kind="webhook", address="https://hooks.example.com/carveout"),
        Contact(kind="email", address="security@netsec.example.com"),
    ]
    assert view.updated_at == T0


def test_golden_issued_gives_its_webhook() -> None:
    view = apply(None, golden("grant.issued"), GRANT_ID)
    assert view is not None
    assert [(c.kind, c.address) for c in view.contacts] == [
        ("webhook", "https://hooks.example.com/carveout")
    ]


# --------------------------------------------------------------------------- status changes


def test_suspend_and_reinstate_change_status_and_version() -> None:
    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    suspended = apply(contacts_of(), status_change(GrantSuspended, 2, t1), GRANT_ID)
    assert suspended is not None
    assert (suspended.status, suspended.version, suspended.updated_at) == ("suspended", 2, t1)
    reinstated = apply(suspended, status_change(GrantReinstated, 3, t2), GRANT_ID)
    assert reinstated is not None
    assert (reinstated.status, reinstated.version, reinstated.updated_at) == ("active", 3, t2)
    assert reinstated.contacts == suspended.contacts


def test_amendment_bumps_the_version_and_keeps_the_status() -> None:
    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    suspended = apply(contacts_of(), status_change(GrantSuspended, 2, t1), GRANT_ID)
    after = apply(suspended, amended(3, t2), GRANT_ID)
    assert after is not None
    assert (after.status, after.version, after.updated_at) == ("suspended", 3, t2)


def test_golden_history_ends_revoked() -> None:
    view: GrantContacts | None = None
    seen = []
    for event_type in (
        "grant.issued",
        "grant.amended",
        "grant.suspended",
        "grant.reinstated",
        "carveout.revoked",
    ):
        view = apply(view, golden(event_type), GRANT_ID)
        assert view is not None
        seen.append((view.version, view.status))
    assert seen == [(1, "active"), (2, "active"), (3, "suspended"), (4, "active"), (5, "revoked")]


def test_revocation_applies_to_every_listed_grant_with_its_version() -> None:
    a, b = "grt_A", "grt_B"
    event = revoked(T0 + timedelta(days=1), [a, b], {a: 4})
    assert affected_grants(event) == [a, b]
    after_a = apply(contacts_of(a), event, a)
    after_b = apply(contacts_of(b), event, b)
    assert after_a is not None and after_b is not None
    assert (after_a.status, after_a.version) == ("revoked", 4)
    assert (after_b.status, after_b.version) == ("revoked", 2)  # no version given: the next


# --------------------------------------------------------------------------- idempotence


@pytest.mark.parametrize(
    "event_type", ["grant.amended", "grant.suspended", "grant.reinstated", "carveout.revoked"]
)
def test_a_repeated_event_leaves_the_view_unchanged(event_type: str) -> None:
    once = apply(contacts_of(), golden(event_type), GRANT_ID)
    assert once is not None
    assert apply(once, golden(event_type), GRANT_ID) is once


def test_an_older_version_leaves_the_view_unchanged() -> None:
    view = apply(contacts_of(), status_change(GrantSuspended, 3, T0), GRANT_ID)
    assert view is not None
    assert apply(view, status_change(GrantReinstated, 2, T0), GRANT_ID) is view
    assert apply(view, amended(3, T0), GRANT_ID) is view


def test_a_repeated_issue_does_not_reset_a_later_view() -> None:
    view = apply(contacts_of(), status_change(GrantSuspended, 2, T0), GRANT_ID)
    assert view is not None
    assert apply(view, issued(), GRANT_ID) is view


def test_a_repeated_revocation_without_grant_versions_changes_nothing() -> None:
    event = revoked(T0 + timedelta(days=1), [GRANT_ID])
    once = apply(contacts_of(), event, GRANT_ID)
    assert once is not None
    assert (once.version, once.status) == (2, "revoked")
    assert apply(once, event, GRANT_ID) is once


def test_revocation_is_final() -> None:
    gone = apply(contacts_of(), revoked(T0, [GRANT_ID], {GRANT_ID: 2}), GRANT_ID)
    assert gone is not None
    assert apply(gone, status_change(GrantReinstated, 9, T0), GRANT_ID) is gone
    assert apply(gone, amended(10, T0), GRANT_ID) is gone


@pytest.mark.parametrize(
    "event_type", ["grant.amended", "grant.suspended", "grant.reinstated", "carveout.revoked"]
)
def test_an_event_for_an_unknown_grant_gives_none(event_type: str) -> None:
    assert apply(None, golden(event_type), GRANT_ID) is None


# --------------------------------------------------------------------------- properties


@st.composite
def changes(draw: st.DrawFn) -> list[Any]:
    """Grant changes with any versions, in any order (duplicates and stale ones included)."""
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["suspend", "reinstate", "amend", "revoke"]),
                st.integers(2, 12),
                st.integers(0, 400),
            )
        )
    )
    events: list[Any] = []
    for kind, version, hours in steps:
        moment = T0 + timedelta(hours=hours)
        if kind == "suspend":
            events.append(status_change(GrantSuspended, version, moment))
        elif kind == "reinstate":
            events.append(status_change(GrantReinstated, version, moment))
        elif kind == "amend":
            events.append(amended(version, moment))
        else:
            events.append(revoked(moment, [GRANT_ID], {GRANT_ID: version}))
    return events


@given(changes())
def test_versions_never_go_down_and_repeats_change_nothing(events: list[Any]) -> None:
    view = contacts_of()
    for event in events:
        after = apply(view, event, GRANT_ID)
        assert after is not None
        assert after.version >= view.version
        assert apply(after, event, GRANT_ID) == after
        assert after.contacts == view.contacts
        view = after


@given(st.permutations(["grant.amended", "grant.suspended", "grant.reinstated"]))
def test_the_highest_version_wins_whatever_the_order(order: list[str]) -> None:
    """Out-of-order delivery: the change with the highest version decides the status."""
    view: GrantContacts | None = apply(None, golden("grant.issued"), GRANT_ID)
    for event_type in order:
        view = apply(view, golden(event_type), GRANT_ID)
    assert view is not None
    assert (view.version, view.status) == (4, "active")  # the reinstatement, version 4
