"""The breach policy's decision (``decide_breach_policy``): pure over the grant, its counted
critical breaches, when the breach happened and now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from carveout_contracts import CarveoutRevoked, GrantSuspended
from carveout_grant.breach_policy import decide_breach_policy, policy_event_id
from carveout_grant.domain import Grant, GrantRequest, apply, issue, reinstate, revoke, suspend

ISSUED = datetime(2026, 6, 28, 14, 0, tzinfo=UTC)
HAPPENED = ISSUED + timedelta(hours=5)
NOW = HAPPENED + timedelta(seconds=40)
WINDOW = 3600


def grant_with(**policy: Any) -> Grant:
    request = GrantRequest.model_validate(
        {
            "carveout_id": "co-policy",
            "model_id": "mythos-preview",
            "grantee": {"id": "org-netsec", "name": "Example"},
            "valid_from": "2026-06-28T00:00:00Z",
            "valid_until": "2026-12-31T00:00:00Z",
            "breach_policy": {"window_seconds": WINDOW, **policy},
        }
    )
    return apply(None, issue(request, grant_id="grt_policy", by="regulator", now=ISSUED))


def breaches(count: int, at: datetime = HAPPENED) -> list[tuple[str, datetime]]:
    return [(f"brc_{n:03d}", at) for n in range(count)]


def test_below_the_suspend_threshold_nothing_is_ordered() -> None:
    grant = grant_with(suspend_after_critical=3)
    assert decide_breach_policy(grant, breaches(2), HAPPENED, NOW) is None


def test_at_the_suspend_threshold_the_grant_is_suspended_by_the_policy() -> None:
    grant = grant_with(suspend_after_critical=2)
    decision = decide_breach_policy(grant, breaches(2), HAPPENED, NOW)

    assert decision is not None
    assert decision.action == "suspend"
    assert decision.tripped.breach_ids == ["brc_000", "brc_001"]
    assert decision.reason == f"breach policy: 2 critical breaches within {WINDOW}s"
    change = decision.change
    assert isinstance(change, GrantSuspended)
    assert change.event_id == decision.tripped.event_id
    assert (change.data.cause, change.data.by) == ("breach_policy", "breach-policy")
    assert change.data.breach_ids == ["brc_000", "brc_001"]
    assert change.data.effective_at == NOW == change.occurred_at  # takes effect now
    assert (decision.grant.lifecycle, decision.grant.version) == ("suspended", 2)


def test_the_revoke_threshold_wins_over_the_suspend_threshold() -> None:
    grant = grant_with(suspend_after_critical=2, revoke_after_critical=3)
    decision = decide_breach_policy(grant, breaches(5), HAPPENED, NOW)

    assert decision is not None
    assert decision.action == "revoke"
    assert decision.tripped.breach_ids == ["brc_000", "brc_001", "brc_002"]
    change = decision.change
    assert isinstance(change, CarveoutRevoked)
    assert change.data.grant_ids == ["grt_policy"]
    assert (change.data.cause, change.data.revoked_by) == ("breach_policy", "breach-policy")
    assert (decision.grant.lifecycle, decision.grant.version) == ("revoked", 2)


def test_a_suspended_grant_is_revoked_but_not_suspended_again() -> None:
    active = grant_with(suspend_after_critical=1, revoke_after_critical=3)
    suspended = apply(active, suspend(active, "paused", by="regulator", now=ISSUED))

    assert decide_breach_policy(suspended, breaches(2), HAPPENED, NOW) is None
    decision = decide_breach_policy(suspended, breaches(3), HAPPENED, NOW)
    assert decision is not None
    assert decision.action == "revoke"


def test_an_already_revoked_grant_orders_nothing() -> None:
    grant = grant_with(suspend_after_critical=1, revoke_after_critical=1)
    revoked = apply(grant, revoke([grant], "done", carveout_id="co-policy", by="r", now=ISSUED))
    assert decide_breach_policy(revoked, breaches(10), HAPPENED, NOW) is None


def test_the_window_ends_at_the_breach_and_excludes_its_start() -> None:
    grant = grant_with(revoke_after_critical=2)
    start = HAPPENED - timedelta(seconds=WINDOW)
    at_start = ("brc_at_start", start)
    just_inside = ("brc_inside", start + timedelta(microseconds=1))
    after = ("brc_after", HAPPENED + timedelta(microseconds=1))
    breach = ("brc_this", HAPPENED)

    assert decide_breach_policy(grant, [at_start, after, breach], HAPPENED, NOW) is None
    decision = decide_breach_policy(grant, [just_inside, breach], HAPPENED, NOW)
    assert decision is not None
    assert decision.tripped.breach_ids == ["brc_inside", "brc_this"]


def test_breaches_before_the_last_reinstatement_do_not_count() -> None:
    grant = grant_with(suspend_after_critical=2)
    suspended = apply(grant, suspend(grant, "paused", by="r", now=HAPPENED - timedelta(minutes=30)))
    back = HAPPENED - timedelta(minutes=10)
    reinstated = apply(suspended, reinstate(suspended, "resumed", by="r", now=back))
    before = ("brc_before", back - timedelta(minutes=1))
    since = ("brc_since", back + timedelta(minutes=1))

    assert decide_breach_policy(reinstated, [before, since], HAPPENED, NOW) is None
    decision = decide_breach_policy(reinstated, [since, ("brc_this", HAPPENED)], HAPPENED, NOW)
    assert decision is not None
    assert decision.action == "suspend"


def test_the_same_inputs_give_the_same_decision_and_event_id() -> None:
    grant = grant_with(revoke_after_critical=2)
    first = decide_breach_policy(grant, breaches(2), HAPPENED, NOW)
    again = decide_breach_policy(grant, list(reversed(breaches(2))), HAPPENED, NOW)

    assert first is not None and again is not None
    assert first == again
    assert first.tripped.event_id == policy_event_id(grant, "revoke")
    assert first.change.model_dump_json() == again.change.model_dump_json()


def test_the_event_id_follows_the_grant_version_and_the_action() -> None:
    grant = grant_with()
    amended = grant.model_copy(update={"version": 2})
    assert policy_event_id(grant, "revoke") != policy_event_id(amended, "revoke")
    assert policy_event_id(grant, "revoke") != policy_event_id(grant, "suspend")
