"""Judging one access: every condition kind, every no_active_grant reason, the as-of rule,
usage caps per UTC window, warnings that allow, and deterministic breach ids (DESIGN §3, §5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carveout_enforcement.access import Access
from carveout_enforcement.domain import GrantPeriod, GrantView
from carveout_enforcement.judge import (
    CompiledGrant,
    Verdict,
    breach_id,
    compile_grant,
    judge,
    usage_keys,
    window_start,
)

GRANTEE, MODEL = "org-netsec", "mythos-preview"
VALID_FROM = datetime(2026, 6, 28, tzinfo=UTC)
VALID_UNTIL = datetime(2026, 12, 31, tzinfo=UTC)
NOON = datetime(2026, 9, 10, 12, 0, tzinfo=UTC)
EVENT_ID = "0f8e2d7c-5b4a-4c39-8e21-7d6c5b4a3f29"

DEMO_CONDITIONS: list[dict[str, Any]] = [
    {"id": "countries", "kind": "user_countries", "allow": ["US", "GB", "IN"]},
    {"id": "embargo", "kind": "user_countries", "deny": ["KP", "IR", "CU", "SY", "RU"]},
    {"id": "regions", "kind": "deployment_regions", "allow": ["us-east", "us-west"]},
    {
        "id": "purpose",
        "kind": "purposes",
        "allow": ["vulnerability-scanning"],
        "severity": "warning",
    },
    {"id": "safeguards", "kind": "safeguards", "require": ["access_logging", "mfa"]},
]


def period(
    version: int = 1,
    status: str = "active",
    effective_at: datetime | None = None,
    conditions: list[dict[str, Any]] | None = None,
    valid_from: datetime = VALID_FROM,
    valid_until: datetime = VALID_UNTIL,
) -> dict[str, Any]:
    return {
        "version": version,
        "status": status,
        "effective_at": effective_at,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "conditions": DEMO_CONDITIONS if conditions is None else conditions,
    }


def grant(
    grant_id: str = "grt_A",
    *periods: dict[str, Any],
    conditions: list[dict[str, Any]] | None = None,
    valid_from: datetime = VALID_FROM,
    valid_until: datetime = VALID_UNTIL,
) -> CompiledGrant:
    if not periods:
        periods = (period(conditions=conditions, valid_from=valid_from, valid_until=valid_until),)
    view = GrantView.model_validate(
        {
            "grant_id": grant_id,
            "carveout_id": "co-mythos-2026",
            "grantee_id": GRANTEE,
            "model_id": MODEL,
            "breach_policy": {"revoke_after_critical": 3},
            "periods": [GrantPeriod.model_validate(p) for p in periods],
            "updated_at": VALID_FROM,
        }
    )
    return compile_grant(view)


def access(when: datetime = NOON, **changes: Any) -> Access:
    fields: dict[str, Any] = {
        "event_id": EVENT_ID,
        "occurred_at": when.timestamp(),
        "request_id": "req_1",
        "grantee_id": GRANTEE,
        "model_id": MODEL,
        "grant_id": None,
        "user_id": "u-1842",
        "user_country": "US",
        "deployment_region": "us-east",
        "purpose": "vulnerability-scanning",
        "safeguards": frozenset({"access_logging", "mfa"}),
        "units": 10,
        "gateway_id": "gw-1",
    }
    return Access(**{**fields, **changes})


def verdict_of(a: Access, *grants: CompiledGrant, usage: dict[Any, int] | None = None) -> Verdict:
    return judge(a, list(grants), usage or {})


def ids(verdict: Verdict) -> list[str]:
    return [v["condition_id"] for v in verdict.violations]


def only(verdict: Verdict) -> dict[str, Any]:
    [violation] = verdict.violations
    return violation


# --------------------------------------------------------------------------- condition kinds


def test_a_compliant_access_is_allowed_with_no_violations() -> None:
    verdict = verdict_of(access(), grant())
    assert verdict.decision == "allow"
    assert verdict.violations == []
    assert verdict.severity is None
    assert (verdict.grant_id, verdict.grant_version) == ("grt_A", 1)


@pytest.mark.parametrize("country", ["US", "GB", "IN"])
def test_user_countries_allow_list_admits_listed_countries(country: str) -> None:
    conditions = [{"id": "countries", "kind": "user_countries", "allow": ["US", "GB", "IN"]}]
    verdict = verdict_of(access(user_country=country), grant(conditions=conditions))
    assert (verdict.decision, verdict.violations) == ("allow", [])


def test_user_countries_allow_list_denies_any_other_country() -> None:
    conditions = [{"id": "countries", "kind": "user_countries", "allow": ["US", "GB", "IN"]}]
    verdict = verdict_of(access(user_country="FR"), grant(conditions=conditions))
    assert verdict.decision == "deny"
    assert only(verdict) == {
        "condition_id": "countries",
        "kind": "user_countries",
        "severity": "critical",
        "expected": {"allow": ["US", "GB", "IN"]},
        "actual": "FR",
    }


def test_user_countries_deny_list_denies_listed_countries() -> None:
    conditions = [{"id": "embargo", "kind": "user_countries", "deny": ["KP", "IR"]}]
    verdict = verdict_of(access(user_country="KP"), grant(conditions=conditions))
    assert verdict.decision == "deny"
    assert only(verdict) == {
        "condition_id": "embargo",
        "kind": "user_countries",
        "severity": "critical",
        "expected": {"deny": ["KP", "IR"]},
        "actual": "KP",
    }


def test_user_countries_deny_list_admits_every_other_country() -> None:
    conditions = [{"id": "embargo", "kind": "user_countries", "deny": ["KP", "IR"]}]
    verdict = verdict_of(access(user_country="FR"), grant(conditions=conditions))
    assert (verdict.decision, verdict.violations) == ("allow", [])


def test_an_embargoed_country_breaks_both_country_conditions() -> None:
    verdict = verdict_of(access(user_country="KP"), grant())
    assert verdict.decision == "deny"
    assert ids(verdict) == ["countries", "embargo"]
    assert verdict.severity == "critical"


@pytest.mark.parametrize(("region", "allowed"), [("us-east", True), ("eu-west", False)])
def test_deployment_regions(region: str, allowed: bool) -> None:
    conditions = [{"id": "regions", "kind": "deployment_regions", "allow": ["us-east", "us-west"]}]
    verdict = verdict_of(access(deployment_region=region), grant(conditions=conditions))
    if allowed:
        assert (verdict.decision, verdict.violations) == ("allow", [])
    else:
        assert verdict.decision == "deny"
        assert only(verdict) == {
            "condition_id": "regions",
            "kind": "deployment_regions",
            "severity": "critical",
            "expected": {"allow": ["us-east", "us-west"]},
            "actual": "eu-west",
        }


@pytest.mark.parametrize(("purpose", "allowed"), [("vulnerability-scanning", True), ("ads", False)])
def test_purposes(purpose: str, allowed: bool) -> None:
    conditions = [
        {"id": "purpose", "kind": "purposes", "allow": ["vulnerability-scanning", "triage"]}
    ]
    verdict = verdict_of(access(purpose=purpose), grant(conditions=conditions))
    if allowed:
        assert (verdict.decision, verdict.violations) == ("allow", [])
    else:
        assert verdict.decision == "deny"
        assert only(verdict) == {
            "condition_id": "purpose",
            "kind": "purposes",
            "severity": "critical",
            "expected": {"allow": ["vulnerability-scanning", "triage"]},
            "actual": "ads",
        }


def test_safeguards_all_attested_allows_and_extra_ones_do_no_harm() -> None:
    conditions = [{"id": "sg", "kind": "safeguards", "require": ["access_logging", "mfa"]}]
    attested = frozenset({"access_logging", "mfa", "sso"})
    verdict = verdict_of(access(safeguards=attested), grant(conditions=conditions))
    assert (verdict.decision, verdict.violations) == ("allow", [])


def test_safeguards_any_missing_denies_and_names_what_is_missing() -> None:
    conditions = [{"id": "sg", "kind": "safeguards", "require": ["access_logging", "mfa"]}]
    verdict = verdict_of(
        access(safeguards=frozenset({"sso", "access_logging"})), grant(conditions=conditions)
    )
    assert verdict.decision == "deny"
    assert only(verdict) == {
        "condition_id": "sg",
        "kind": "safeguards",
        "severity": "critical",
        "expected": {"require": ["access_logging", "mfa"]},
        "actual": {"attested": ["access_logging", "sso"], "missing": ["mfa"]},
    }


def test_safeguards_none_attested_misses_them_all() -> None:
    conditions = [{"id": "sg", "kind": "safeguards", "require": ["mfa", "access_logging"]}]
    verdict = verdict_of(access(safeguards=frozenset()), grant(conditions=conditions))
    assert only(verdict)["actual"] == {"attested": [], "missing": ["access_logging", "mfa"]}


def test_every_broken_condition_is_reported_in_grant_order() -> None:
    bad = access(
        user_country="RU",
        deployment_region="eu-west",
        purpose="ads",
        safeguards=frozenset(),
    )
    verdict = verdict_of(bad, grant())
    assert ids(verdict) == ["countries", "embargo", "regions", "purpose", "safeguards"]
    assert [v["severity"] for v in verdict.violations] == [
        "critical",
        "critical",
        "critical",
        "warning",
        "critical",
    ]


# --------------------------------------------------------------------------- severities


def test_warning_only_violations_allow_but_are_reported() -> None:
    verdict = verdict_of(access(purpose="ads"), grant())
    assert verdict.decision == "allow"
    assert ids(verdict) == ["purpose"]
    assert verdict.severity == "warning"
    assert (verdict.grant_id, verdict.grant_version) == ("grt_A", 1)


def test_one_critical_violation_among_warnings_denies() -> None:
    verdict = verdict_of(access(purpose="ads", deployment_region="eu-west"), grant())
    assert verdict.decision == "deny"
    assert verdict.severity == "critical"
    assert sorted(ids(verdict)) == ["purpose", "regions"]


def test_a_warning_severity_on_any_kind_allows() -> None:
    conditions: list[dict[str, Any]] = [
        {"id": "c", "kind": "user_countries", "allow": ["US"], "severity": "warning"},
        {"id": "r", "kind": "deployment_regions", "allow": ["us-east"], "severity": "warning"},
        {"id": "s", "kind": "safeguards", "require": ["mfa"], "severity": "warning"},
        {"id": "u", "kind": "usage_cap", "units": 5, "window": "hour", "severity": "warning"},
    ]
    bad = access(user_country="FR", deployment_region="x", safeguards=frozenset(), units=6)
    verdict = verdict_of(bad, grant(conditions=conditions))
    assert verdict.decision == "allow"
    assert ids(verdict) == ["c", "r", "s", "u"]
    assert verdict.severity == "warning"


# --------------------------------------------------------------------------- no_active_grant


def no_grant(verdict: Verdict) -> str:
    assert verdict.decision == "deny"
    violation = only(verdict)
    assert violation["condition_id"] == violation["kind"] == "no_active_grant"
    assert violation["severity"] == "critical"
    assert violation["expected"] == {"grantee_id": GRANTEE, "model_id": MODEL}
    assert verdict.usage == []  # units of an access no grant covers count towards no cap
    reason: str = violation["actual"]
    return reason


def test_no_grant_at_all_is_unknown() -> None:
    verdict = verdict_of(access())
    assert no_grant(verdict) == "unknown"
    assert (verdict.grant_id, verdict.grant_version) == (None, None)


def test_a_grant_named_by_the_access_that_is_not_a_candidate_is_unknown() -> None:
    verdict = verdict_of(access(grant_id="grt_other"), grant("grt_A"))
    assert no_grant(verdict) == "unknown"
    assert verdict.grant_id is None


def test_before_valid_from_is_not_yet_valid() -> None:
    verdict = verdict_of(access(VALID_FROM - timedelta(seconds=1)), grant())
    assert no_grant(verdict) == "not_yet_valid"
    assert (verdict.grant_id, verdict.grant_version) == ("grt_A", 1)


def test_valid_from_itself_is_valid() -> None:
    assert verdict_of(access(VALID_FROM), grant()).decision == "allow"


def test_at_or_after_valid_until_is_expired() -> None:
    assert no_grant(verdict_of(access(VALID_UNTIL), grant())) == "expired"
    assert no_grant(verdict_of(access(VALID_UNTIL + timedelta(days=3)), grant())) == "expired"
    assert verdict_of(access(VALID_UNTIL - timedelta(seconds=1)), grant()).decision == "allow"


SUSPENDED_AT = datetime(2026, 8, 3, 9, 20, tzinfo=UTC)
REINSTATED_AT = datetime(2026, 8, 5, 16, 45, tzinfo=UTC)
REVOKED_AT = datetime(2026, 9, 10, 11, 5, 7, tzinfo=UTC)


def lifecycle() -> CompiledGrant:
    """Issued (v1), suspended (v2), reinstated (v3), revoked (v4)."""
    return grant(
        "grt_A",
        period(1),
        period(2, "suspended", SUSPENDED_AT),
        period(3, "active", REINSTATED_AT),
        period(4, "revoked", REVOKED_AT),
    )


def test_while_suspended_is_suspended() -> None:
    verdict = verdict_of(access(SUSPENDED_AT + timedelta(hours=1)), lifecycle())
    assert no_grant(verdict) == "suspended"
    assert (verdict.grant_id, verdict.grant_version) == ("grt_A", 2)


def test_after_revocation_is_revoked() -> None:
    verdict = verdict_of(access(REVOKED_AT + timedelta(days=1)), lifecycle())
    assert no_grant(verdict) == "revoked"
    assert (verdict.grant_id, verdict.grant_version) == ("grt_A", 4)


def test_revoked_outranks_expired() -> None:
    """After a revocation and past the validity window, the reason is the revocation."""
    verdict = verdict_of(access(VALID_UNTIL + timedelta(days=1)), lifecycle())
    assert no_grant(verdict) == "revoked"


# --------------------------------------------------------------------------- as of occurred_at


@pytest.mark.parametrize(
    ("moment", "decision", "version"),
    [
        (SUSPENDED_AT - timedelta(seconds=1), "allow", 1),  # before the suspension took effect
        (SUSPENDED_AT, "deny", 2),  # at its very instant
        (REINSTATED_AT - timedelta(microseconds=1), "deny", 2),
        (REINSTATED_AT, "allow", 3),  # reinstated
        (REVOKED_AT - timedelta(seconds=1), "allow", 3),  # just before the revocation
        (REVOKED_AT, "deny", 4),
    ],
)
def test_each_access_is_judged_against_the_period_in_force_when_it_happened(
    moment: datetime, decision: str, version: int
) -> None:
    verdict = verdict_of(access(moment), lifecycle())
    assert (verdict.decision, verdict.grant_version) == (decision, version)
    assert verdict.grant_id == "grt_A"
    assert bool(verdict.violations) == (decision == "deny")


def test_an_access_before_a_revocation_stays_allowed_however_late_it_is_judged() -> None:
    """The compiled grant already knows of the revocation: processing time plays no part."""
    revoked = lifecycle()
    assert revoked.version == 4
    early = access(REVOKED_AT - timedelta(minutes=5))
    assert verdict_of(early, revoked).decision == "allow"


def test_an_amendment_changes_the_conditions_from_its_effective_at() -> None:
    amended_at = datetime(2026, 7, 15, 10, 30, tzinfo=UTC)
    before = [{"id": "regions", "kind": "deployment_regions", "allow": ["us-east"]}]
    after = [{"id": "regions", "kind": "deployment_regions", "allow": ["eu-west"]}]
    compiled = grant("grt_A", period(1, conditions=before), period(2, "active", amended_at, after))

    early = verdict_of(
        access(amended_at - timedelta(seconds=1), deployment_region="us-east"), compiled
    )
    assert (early.decision, early.grant_version) == ("allow", 1)
    early_eu = verdict_of(
        access(amended_at - timedelta(seconds=1), deployment_region="eu-west"), compiled
    )
    assert (early_eu.decision, early_eu.grant_version) == ("deny", 1)
    assert only(early_eu)["expected"] == {"allow": ["us-east"]}

    late = verdict_of(access(amended_at, deployment_region="us-east"), compiled)
    assert (late.decision, late.grant_version) == ("deny", 2)
    assert only(late)["expected"] == {"allow": ["eu-west"]}
    late_eu = verdict_of(access(amended_at, deployment_region="eu-west"), compiled)
    assert (late_eu.decision, late_eu.grant_version) == ("allow", 2)


def test_an_amendment_of_the_validity_window_applies_from_its_effective_at() -> None:
    amended_at = datetime(2026, 10, 1, tzinfo=UTC)
    shorter = datetime(2026, 11, 1, tzinfo=UTC)
    compiled = grant("grt_A", period(1), period(2, "active", amended_at, valid_until=shorter))
    assert verdict_of(access(shorter - timedelta(seconds=1)), compiled).decision == "allow"
    verdict = verdict_of(access(shorter + timedelta(days=1)), compiled)
    assert no_grant(verdict) == "expired"
    assert verdict.grant_version == 2


def test_the_first_period_covers_accesses_before_any_change() -> None:
    """A grant covers its whole validity window once issued, even before it was issued."""
    verdict = verdict_of(access(VALID_FROM + timedelta(minutes=1)), lifecycle())
    assert (verdict.decision, verdict.grant_version) == ("allow", 1)


# --------------------------------------------------------------------------- candidates


def test_an_access_naming_a_grant_is_judged_against_that_grant_only() -> None:
    permissive = grant("grt_A", conditions=[])
    strict = grant(
        "grt_B",
        conditions=[{"id": "regions", "kind": "deployment_regions", "allow": ["eu-west"]}],
    )
    named = verdict_of(access(grant_id="grt_B"), permissive, strict)
    assert (named.decision, named.grant_id) == ("deny", "grt_B")
    assert ids(named) == ["regions"]
    # without the name, a grant that covers the access is found
    anonymous = verdict_of(access(), permissive, strict)
    assert (anonymous.decision, anonymous.grant_id, anonymous.violations) == ("allow", "grt_A", [])


def test_an_access_naming_a_suspended_grant_is_not_saved_by_another_grant() -> None:
    suspended = grant("grt_A", period(1), period(2, "suspended", SUSPENDED_AT))
    other = grant("grt_B")
    moment = SUSPENDED_AT + timedelta(days=1)
    verdict = verdict_of(access(moment, grant_id="grt_A"), suspended, other)
    assert no_grant(verdict) == "suspended"
    assert verdict.grant_id == "grt_A"
    assert verdict_of(access(moment), suspended, other).decision == "allow"


def test_a_lapsed_grant_does_not_hide_one_in_force() -> None:
    old = grant("grt_A", valid_until=datetime(2026, 8, 1, tzinfo=UTC))
    new = grant("grt_B", valid_from=datetime(2026, 8, 1, tzinfo=UTC))
    verdict = verdict_of(access(NOON), old, new)
    assert (verdict.decision, verdict.grant_id) == ("allow", "grt_B")


# --------------------------------------------------------------------------- usage caps

HOUR_CAP = [{"id": "cap", "kind": "usage_cap", "units": 1000, "window": "hour"}]
DAY_CAP = [{"id": "cap", "kind": "usage_cap", "units": 1000, "window": "day"}]


def hour_key(moment: datetime, grant_id: str = "grt_A") -> tuple[str, str, int]:
    start = moment.replace(minute=0, second=0, microsecond=0)
    return (grant_id, "hour", int(start.timestamp()))


def day_key(moment: datetime, grant_id: str = "grt_A") -> tuple[str, str, int]:
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return (grant_id, "day", int(start.timestamp()))


def test_usage_exactly_at_the_cap_is_allowed() -> None:
    moment = NOON + timedelta(minutes=30)
    verdict = verdict_of(
        access(moment, units=100), grant(conditions=HOUR_CAP), usage={hour_key(moment): 900}
    )
    assert (verdict.decision, verdict.violations) == ("allow", [])


def test_usage_one_over_the_cap_is_denied_with_the_total() -> None:
    moment = NOON + timedelta(minutes=30)
    verdict = verdict_of(
        access(moment, units=101), grant(conditions=HOUR_CAP), usage={hour_key(moment): 900}
    )
    assert verdict.decision == "deny"
    assert only(verdict) == {
        "condition_id": "cap",
        "kind": "usage_cap",
        "severity": "critical",
        "expected": {"units": 1000, "window": "hour"},
        "actual": {"units": 1001, "window_start": "2026-09-10T12:00:00+00:00"},
    }


def test_a_single_access_larger_than_the_cap_is_denied() -> None:
    verdict = verdict_of(access(units=1001), grant(conditions=HOUR_CAP))
    assert only(verdict)["actual"]["units"] == 1001


def test_a_new_hour_resets_the_hourly_count() -> None:
    last_hour = NOON - timedelta(seconds=1)  # 11:59:59, the previous UTC hour
    usage = {hour_key(last_hour): 1000}
    assert (
        verdict_of(access(last_hour, units=1), grant(conditions=HOUR_CAP), usage=usage).decision
        == "deny"
    )
    verdict = verdict_of(access(NOON, units=1000), grant(conditions=HOUR_CAP), usage=usage)
    assert (verdict.decision, verdict.violations) == ("allow", [])


def test_the_daily_cap_counts_the_whole_utc_day_and_resets_at_midnight() -> None:
    late = datetime(2026, 9, 10, 23, 59, 59, tzinfo=UTC)
    usage = {day_key(late): 999, hour_key(late): 0}
    compiled = grant(conditions=DAY_CAP)
    assert verdict_of(access(late, units=1), compiled, usage=usage).decision == "allow"
    over = verdict_of(access(late, units=2), compiled, usage=usage)
    assert over.decision == "deny"
    assert only(over)["actual"] == {"units": 1001, "window_start": "2026-09-10T00:00:00+00:00"}
    # earlier the same day counts the same window
    morning = datetime(2026, 9, 10, 0, 0, tzinfo=UTC)
    assert verdict_of(access(morning, units=2), compiled, usage=usage).decision == "deny"
    midnight = datetime(2026, 9, 11, tzinfo=UTC)
    assert verdict_of(access(midnight, units=1000), compiled, usage=usage).decision == "allow"


def test_usage_of_another_grant_does_not_count() -> None:
    usage = {hour_key(NOON, "grt_B"): 5000}
    assert (
        verdict_of(access(units=1000), grant(conditions=HOUR_CAP), usage=usage).decision == "allow"
    )


def test_the_hourly_and_daily_windows_count_separately() -> None:
    conditions = [
        {"id": "hourly", "kind": "usage_cap", "units": 100, "window": "hour"},
        {"id": "daily", "kind": "usage_cap", "units": 1000, "window": "day", "severity": "warning"},
    ]
    usage = {hour_key(NOON): 50, day_key(NOON): 960}
    verdict = verdict_of(access(units=50), grant(conditions=conditions), usage=usage)
    assert verdict.decision == "allow"  # the hour is at its cap; the day's warning allows
    assert ids(verdict) == ["daily"]
    assert only(verdict)["actual"]["units"] == 1010


def test_a_verdict_names_the_usage_windows_its_units_count_towards() -> None:
    moment = datetime(2026, 9, 10, 13, 47, 12, tzinfo=UTC)
    verdict = verdict_of(access(moment), grant())
    assert sorted(verdict.usage) == sorted([hour_key(moment), day_key(moment)])
    assert verdict.usage == usage_keys("grt_A", moment.timestamp())


@pytest.mark.parametrize(
    ("moment", "window", "start"),
    [
        (
            datetime(2026, 9, 10, 13, 47, 12, tzinfo=UTC),
            "hour",
            datetime(2026, 9, 10, 13, tzinfo=UTC),
        ),
        (datetime(2026, 9, 10, 13, 0, tzinfo=UTC), "hour", datetime(2026, 9, 10, 13, tzinfo=UTC)),
        (datetime(2026, 9, 10, 13, 47, 12, tzinfo=UTC), "day", datetime(2026, 9, 10, tzinfo=UTC)),
        (
            datetime(2026, 9, 10, 23, 59, 59, 999000, tzinfo=UTC),
            "day",
            datetime(2026, 9, 10, tzinfo=UTC),
        ),
    ],
)
def test_windows_are_utc_aligned(moment: datetime, window: str, start: datetime) -> None:
    assert window_start(moment.timestamp(), window) == int(start.timestamp())


# --------------------------------------------------------------------------- breach ids


def test_breach_ids_are_deterministic_per_access_and_grant_version() -> None:
    same = breach_id(EVENT_ID, "grt_A", 3)
    assert same == breach_id(EVENT_ID, "grt_A", 3)
    assert same.startswith("brc_")
    assert breach_id(EVENT_ID, "grt_A", 4) != same
    assert breach_id(EVENT_ID, "grt_B", 3) != same
    assert breach_id("7c0b6c1e-3c55-4d1a-9f0e-2b1f0f3f9a10", "grt_A", 3) != same
    assert breach_id(EVENT_ID, None, None) == breach_id(EVENT_ID, None, None)
    assert breach_id(EVENT_ID, None, None) != same


def test_the_same_access_judged_twice_gives_the_same_verdict_and_breach_id() -> None:
    bad = access(user_country="KP")
    first, second = verdict_of(bad, lifecycle()), verdict_of(bad, lifecycle())
    assert first == second
    assert breach_id(bad.event_id, first.grant_id, first.grant_version) == breach_id(
        bad.event_id, second.grant_id, second.grant_version
    )
