"""Enforcement's pure projection of grants over time: periods, as-of lookup, idempotence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carveout_contracts import (
    CarveoutRevoked,
    GrantAmended,
    GrantIssued,
    GrantReinstated,
    GrantSuspended,
    decode,
    topics,
)
from carveout_enforcement.domain import GrantView, affected_grants, apply
from carveout_enforcement.handlers.grants import GrantIndex

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"  # the golden grant
T0 = datetime(2026, 6, 28, 14, 0, tzinfo=UTC)


def golden(event_type: str) -> Any:
    return decode(topics.GRANTS, (GOLDEN / f"{event_type}.v1.json").read_bytes())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def issued(grant_id: str = GRANT_ID, grantee: str = "org-netsec") -> GrantIssued:
    return GrantIssued.model_validate(
        {
            "producer": "grant",
            "occurred_at": T0,
            "data": {
                "grant_id": grant_id,
                "carveout_id": "co-mythos-2026",
                "grantee": {"id": grantee, "name": grantee},
                "model_id": "mythos-preview",
                "valid_from": "2026-06-28T00:00:00Z",
                "valid_until": "2026-12-31T00:00:00Z",
                "conditions": [
                    {"id": "regions", "kind": "deployment_regions", "allow": ["us-east"]}
                ],
                "breach_policy": {"revoke_after_critical": 3},
                "issued_by": "regulator",
            },
        }
    )


def status_change(
    cls: type[GrantSuspended | GrantReinstated],
    version: int,
    effective_at: datetime,
    grant_id: str = GRANT_ID,
) -> GrantSuspended | GrantReinstated:
    return cls.model_validate(
        {
            "producer": "grant",
            "occurred_at": effective_at,
            "data": {
                "grant_id": grant_id,
                "version": version,
                "reason": "because",
                "by": "regulator",
                "effective_at": effective_at,
            },
        }
    )


def amended(version: int, effective_at: datetime, units: int = 5000) -> GrantAmended:
    return GrantAmended.model_validate(
        {
            "producer": "grant",
            "occurred_at": effective_at,
            "data": {
                "grant_id": GRANT_ID,
                "version": version,
                "valid_from": "2026-06-28T00:00:00Z",
                "valid_until": "2027-06-28T00:00:00Z",
                "conditions": [
                    {"id": "cap", "kind": "usage_cap", "units": units, "window": "hour"}
                ],
                "breach_policy": {"suspend_after_critical": 1},
                "amended_by": "regulator",
                "reason": "new terms",
                "effective_at": effective_at,
            },
        }
    )


def revoked(
    effective_at: datetime, grant_ids: list[str], versions: dict[str, int] | None = None
) -> CarveoutRevoked:
    return CarveoutRevoked.model_validate(
        {
            "producer": "grant",
            "occurred_at": effective_at,
            "data": {
                "carveout_id": "co-mythos-2026",
                "grant_ids": grant_ids,
                "reason": "revoked",
                "revoked_by": "regulator",
                "effective_at": effective_at,
                "grant_versions": versions or {},
            },
        }
    )


def fold(events: list[Any], grant_id: str = GRANT_ID) -> GrantView:
    view: GrantView | None = None
    for event in events:
        view = apply(view, event, grant_id)
    assert view is not None
    return view


HISTORY = ["grant.issued", "grant.amended", "grant.suspended", "grant.reinstated"]


@pytest.fixture
def golden_view() -> GrantView:
    """The golden grant through its whole life: issued, amended, suspended, reinstated, revoked."""
    return fold([golden(t) for t in [*HISTORY, "carveout.revoked"]])


# --------------------------------------------------------------------------- building periods


def test_issued_builds_one_open_ended_period() -> None:
    event = golden("grant.issued")
    view = apply(None, event, GRANT_ID)
    assert view is not None
    assert (view.grant_id, view.carveout_id) == (GRANT_ID, "co-mythos-2026")
    assert (view.grantee_id, view.model_id) == ("org-netsec", "mythos-preview")
    assert (view.version, view.status) == (1, "active")
    assert view.updated_at == event.occurred_at
    [period] = view.periods
    assert period.effective_at is None
    assert period.valid_from == event.data.valid_from
    assert period.valid_until == event.data.valid_until
    assert period.conditions == event.data.conditions
    assert view.breach_policy == event.data.breach_policy


def test_each_change_appends_a_period(golden_view: GrantView) -> None:
    summary = [(p.version, p.status, p.effective_at) for p in golden_view.periods]
    assert summary == [
        (1, "active", None),
        (2, "active", at("2026-07-15T10:30:00Z")),
        (3, "suspended", at("2026-08-03T09:20:00Z")),
        (4, "active", at("2026-08-05T16:45:00Z")),
        (5, "revoked", at("2026-09-10T11:05:07Z")),
    ]
    assert (golden_view.version, golden_view.status) == (5, "revoked")
    assert golden_view.current is golden_view.periods[-1]
    assert golden_view.updated_at == at("2026-09-10T11:05:07Z")


def test_amendment_replaces_terms_and_policy_and_keeps_status() -> None:
    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    view = fold([issued(), status_change(GrantSuspended, 2, t1), amended(3, t2, units=42)])
    current = view.current
    assert (current.version, current.status, current.effective_at) == (3, "suspended", t2)
    assert [(c.id, c.units) for c in current.conditions] == [("cap", 42)]  # type: ignore[union-attr]
    assert current.valid_until == datetime(2027, 6, 28, tzinfo=UTC)
    assert view.breach_policy.suspend_after_critical == 1
    assert view.breach_policy.revoke_after_critical is None
    # the earlier periods keep the terms that were in force then
    assert view.periods[0].conditions[0].id == "regions"


def test_status_changes_keep_the_terms_in_force() -> None:
    view = fold(
        [
            issued(),
            amended(2, T0 + timedelta(days=1), units=7),
            status_change(GrantSuspended, 3, T0 + timedelta(days=2)),
        ]
    )
    assert view.current.conditions == view.periods[1].conditions
    assert view.current.valid_until == view.periods[1].valid_until


def test_periods_start_at_effective_at_not_when_the_event_was_published() -> None:
    """A change recorded late (say by the breach policy) is in force from its effective_at."""
    effective, recorded = T0 + timedelta(days=1), T0 + timedelta(days=2)
    suspension = GrantSuspended.model_validate(
        {
            "producer": "grant",
            "occurred_at": recorded,
            "data": {
                "grant_id": GRANT_ID,
                "version": 2,
                "reason": "three critical breaches",
                "by": "grant",
                "effective_at": effective,
                "cause": "breach_policy",
            },
        }
    )
    revocation = revoked(T0 + timedelta(days=3), [GRANT_ID], {GRANT_ID: 3})
    revocation = revocation.model_copy(update={"occurred_at": T0 + timedelta(days=4)})
    view = fold([issued(), suspension, revocation])
    assert [p.effective_at for p in view.periods] == [None, effective, T0 + timedelta(days=3)]
    assert view.updated_at == T0 + timedelta(days=4)
    assert view.period_at(effective + timedelta(hours=1)).status == "suspended"
    assert view.period_at(T0 + timedelta(days=3, hours=1)).status == "revoked"


# --------------------------------------------------------------------------- period_at


@pytest.mark.parametrize(
    ("moment", "version", "status"),
    [
        ("2026-01-01T00:00:00Z", 1, "active"),  # before validity: still the first period
        ("2026-07-01T00:00:00Z", 1, "active"),  # before the amendment
        ("2026-07-15T10:30:00Z", 2, "active"),  # the amendment, at its very instant
        ("2026-08-03T09:19:59Z", 2, "active"),  # just before the suspension
        ("2026-08-03T09:20:00Z", 3, "suspended"),  # at the suspension
        ("2026-08-04T00:00:00Z", 3, "suspended"),  # while suspended
        ("2026-08-05T16:45:00Z", 4, "active"),  # reinstated
        ("2026-09-10T11:05:06Z", 4, "active"),  # just before the revocation
        ("2026-09-10T11:05:07Z", 5, "revoked"),  # at the revocation
        ("2027-06-01T00:00:00Z", 5, "revoked"),  # long after
    ],
)
def test_period_at_picks_the_period_in_force(
    golden_view: GrantView, moment: str, version: int, status: str
) -> None:
    period = golden_view.period_at(at(moment))
    assert (period.version, period.status) == (version, status)


def test_period_at_gives_the_terms_in_force_then(golden_view: GrantView) -> None:
    def cap(moment: str) -> int:
        conditions = golden_view.period_at(at(moment)).conditions
        return next(c.units for c in conditions if c.kind == "usage_cap")

    assert cap("2026-07-01T00:00:00Z") == 1_000_000
    assert cap("2026-07-20T00:00:00Z") == 2_000_000


# --------------------------------------------------------------------------- idempotence


@pytest.mark.parametrize(
    ("event_type", "version"),
    [
        ("grant.amended", 2),
        ("grant.suspended", 3),
        ("grant.reinstated", 4),
        ("carveout.revoked", 5),
    ],
)
def test_a_repeated_event_leaves_the_view_unchanged(event_type: str, version: int) -> None:
    history = [*HISTORY, "carveout.revoked"]
    view = fold([golden(t) for t in history[: history.index(event_type) + 1]])
    assert view.version == version
    assert apply(view, golden(event_type), GRANT_ID) is view


def test_an_older_version_leaves_the_view_unchanged() -> None:
    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    view = fold([issued(), status_change(GrantSuspended, 3, t2)])
    assert apply(view, amended(2, t1), GRANT_ID) is view
    assert apply(view, status_change(GrantReinstated, 3, t2), GRANT_ID) is view


def test_a_repeated_issue_does_not_reset_a_later_view() -> None:
    """A grant.issued seen again must not bring a suspended grant back to active (fail-open)."""
    view = fold([issued(), status_change(GrantSuspended, 2, T0 + timedelta(days=1))])
    assert apply(view, issued(), GRANT_ID) is view


def test_a_repeated_revocation_without_grant_versions_changes_nothing() -> None:
    event = revoked(T0 + timedelta(days=1), [GRANT_ID])
    once = fold([issued(), event])
    assert (once.version, once.status) == (2, "revoked")
    assert apply(once, event, GRANT_ID) is once


@pytest.mark.parametrize("event_type", ["grant.issued", "grant.amended", "grant.reinstated"])
def test_revocation_is_final(event_type: str) -> None:
    """Nothing after a revocation, not even a higher version, brings the grant back."""
    view = fold([issued(), revoked(T0 + timedelta(days=1), [GRANT_ID], {GRANT_ID: 2})])
    later = golden(event_type)  # versions 1, 2 and 4
    assert apply(view, later, GRANT_ID) is view
    assert apply(view, status_change(GrantReinstated, 9, T0 + timedelta(days=2)), GRANT_ID) is view


# --------------------------------------------------------------------------- carveout.revoked


def test_revocation_applies_to_every_listed_grant_with_its_version() -> None:
    a, b = "grt_A", "grt_B"
    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    views = {
        a: fold([issued(a)], a),
        b: fold([issued(b), status_change(GrantSuspended, 2, t1, grant_id=b)], b),
    }
    event = revoked(t2, [a, b], {a: 2, b: 3})
    assert affected_grants(event) == [a, b]
    after: dict[str, GrantView] = {}
    for grant_id in affected_grants(event):
        view = apply(views[grant_id], event, grant_id)
        assert view is not None
        after[grant_id] = view
    assert (after[a].version, after[a].status) == (2, "revoked")
    assert (after[b].version, after[b].status) == (3, "revoked")
    assert after[a].current.effective_at == after[b].current.effective_at == t2
    assert after[b].period_at(t2 - timedelta(seconds=1)).status == "suspended"


def test_revocation_without_a_version_for_the_grant_takes_the_next_one() -> None:
    view = fold([issued(), amended(2, T0 + timedelta(days=1))])
    after = apply(view, revoked(T0 + timedelta(days=2), [GRANT_ID], {"grt_other": 9}), GRANT_ID)
    assert after is not None
    assert (after.version, after.status) == (3, "revoked")


def test_affected_grants_of_a_grant_event_is_its_grant() -> None:
    assert affected_grants(golden("grant.suspended")) == [GRANT_ID]


@pytest.mark.parametrize(
    "event_type", ["grant.amended", "grant.suspended", "grant.reinstated", "carveout.revoked"]
)
def test_an_event_for_an_unknown_grant_gives_none(event_type: str) -> None:
    assert apply(None, golden(event_type), GRANT_ID) is None


# --------------------------------------------------------------------------- the index


def ids(grants: list[Any]) -> list[str]:
    return [g.grant_id for g in grants]


def test_index_finds_views_by_id_and_by_grantee_and_model() -> None:
    a = fold([issued("grt_A")], "grt_A")
    b = fold([issued("grt_B")], "grt_B")
    c = fold([issued("grt_C", grantee="org-other")], "grt_C")
    index = GrantIndex([a, b, c])
    assert index.get("grt_B") is b
    assert index.get("grt_nope") is None
    assert ids(index.candidates("org-netsec", "mythos-preview")) == ["grt_A", "grt_B"]
    assert ids(index.candidates("org-other", "mythos-preview")) == ["grt_C"]
    # a newer view of a known grant replaces it without listing it twice
    newer = apply(a, status_change(GrantSuspended, 2, T0 + timedelta(days=1), "grt_A"), "grt_A")
    assert newer is not None
    index.put(newer)
    assert index.get("grt_A") is newer
    assert ids(index.candidates("org-netsec", "mythos-preview")) == ["grt_A", "grt_B"]
    assert index.candidates("org-netsec", "mythos-preview")[0].version == 2


# --------------------------------------------------------------------------- properties

KINDS = ("suspend", "reinstate", "amend", "revoke")


@st.composite
def changes(draw: st.DrawFn) -> list[Any]:
    """Grant changes with any versions, in any order (duplicates and stale ones included)."""
    steps = draw(
        st.lists(st.tuples(st.sampled_from(KINDS), st.integers(2, 12), st.integers(0, 400)))
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
def test_versions_never_go_down(events: list[Any]) -> None:
    view = fold([issued()])
    for event in events:
        before = view
        after = apply(view, event, GRANT_ID)
        assert after is not None
        assert after.version >= before.version
        if before.status == "revoked":
            assert after is before  # revocation is final
        else:
            assert after.version == max(before.version, event_version(event))
        view = after
    versions = [p.version for p in view.periods]
    assert versions == sorted(set(versions))


def event_version(event: Any) -> int:
    if isinstance(event, CarveoutRevoked):
        return event.data.grant_versions[GRANT_ID]
    return int(event.data.version)


@given(changes())
def test_applying_an_event_twice_equals_applying_it_once(events: list[Any]) -> None:
    view = fold([issued()])
    for event in events:
        once = apply(view, event, GRANT_ID)
        assert once is not None
        assert apply(once, event, GRANT_ID) == once
        view = once


@given(
    st.lists(st.sampled_from(KINDS), max_size=10),
    st.lists(st.integers(1, 100), min_size=10, max_size=10),
    st.integers(-50, 1200),
)
def test_period_at_is_the_last_period_started_by_then(
    kinds: list[str], gaps: list[int], probe_hours: int
) -> None:
    """With changes in time order, the period at t is the latest one effective at or before t."""
    events: list[Any] = [issued()]
    moment = T0
    for version, (kind, gap) in enumerate(zip(kinds, gaps, strict=False), start=2):
        moment += timedelta(hours=gap)
        if kind == "suspend":
            events.append(status_change(GrantSuspended, version, moment))
        elif kind == "reinstate":
            events.append(status_change(GrantReinstated, version, moment))
        elif kind == "amend":
            events.append(amended(version, moment))
        else:
            events.append(revoked(moment, [GRANT_ID], {GRANT_ID: version}))
    view = fold(events)
    probe = T0 + timedelta(hours=probe_hours)
    started = [p for p in view.periods if p.effective_at is None or p.effective_at <= probe]
    assert view.period_at(probe) == started[-1]
