"""``judge`` agrees with a plain reference model of DESIGN §3 and §5 on generated grants.

The reference replays a grant's regulator actions (suspend, reinstate, amend, revoke) that
had taken effect by the access's ``occurred_at``, checks the state and validity window
then in force, and evaluates each condition kind straight from the design's table. The
grants under test are built the way enforcement builds them: events folded by
``domain.apply``, then ``compile_grant``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from carveout_contracts import (
    CarveoutRevoked,
    GrantAmended,
    GrantIssued,
    GrantReinstated,
    GrantSuspended,
)
from carveout_enforcement.access import Access
from carveout_enforcement.domain import GrantView, apply
from carveout_enforcement.judge import CompiledGrant, compile_grant, judge

BASE = datetime(2026, 9, 1, tzinfo=UTC)
BASE_S = int(BASE.timestamp())
HOUR, DAY = 3600, 86400
GRANTEE, MODEL = "org-netsec", "mythos-preview"

COUNTRIES = ["US", "GB", "IN", "KP", "FR"]
REGIONS = ["us-east", "us-west", "eu-west"]
PURPOSES = ["vulnerability-scanning", "triage", "ads"]
SAFEGUARDS = ["access_logging", "mfa", "sso"]
ACTIONS = ["suspend", "reinstate", "reinstate", "amend", "amend", "amend", "revoke"]
PRIORITY = ["revoked", "suspended", "not_yet_valid", "expired"]


def at(offset: int) -> datetime:
    return BASE + timedelta(seconds=offset)


# --------------------------------------------------------------------------- generated grants


@dataclass
class Terms:
    valid_from: int
    valid_until: int
    conditions: list[dict[str, Any]]


@dataclass
class Action:
    kind: str  # suspend | reinstate | amend | revoke
    at: int
    terms: Terms | None = None


@dataclass
class Grant:
    grant_id: str
    terms: Terms
    actions: list[Action] = field(default_factory=list)


def subset(values: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True)


severities = st.sampled_from(["critical", "warning"])


@st.composite
def condition(draw: st.DrawFn, cid: str) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["user_countries_allow", "user_countries_deny", "regions", "purposes", "safeguards"]
            + ["usage_cap"] * 2
        )
    )
    base = {"id": cid, "severity": draw(severities)}
    if kind == "user_countries_allow":
        return {**base, "kind": "user_countries", "allow": draw(subset(COUNTRIES))}
    if kind == "user_countries_deny":
        return {**base, "kind": "user_countries", "deny": draw(subset(COUNTRIES))}
    if kind == "regions":
        return {**base, "kind": "deployment_regions", "allow": draw(subset(REGIONS))}
    if kind == "purposes":
        return {**base, "kind": "purposes", "allow": draw(subset(PURPOSES))}
    if kind == "safeguards":
        return {**base, "kind": "safeguards", "require": draw(subset(SAFEGUARDS))}
    return {
        **base,
        "kind": "usage_cap",
        "units": draw(st.integers(1, 2000)),
        "window": draw(st.sampled_from(["hour", "day"])),
    }


@st.composite
def terms(draw: st.DrawFn) -> Terms:
    valid_from = draw(st.integers(-3 * DAY, 0))
    valid_until = valid_from + draw(
        st.one_of(st.integers(1, 3 * DAY), st.integers(12 * DAY, 20 * DAY))
    )
    count = draw(st.integers(0, 4))
    conditions = [draw(condition(f"c{i}")) for i in range(count)]
    return Terms(valid_from, valid_until, conditions)


@st.composite
def grants(draw: st.DrawFn, grant_id: str) -> Grant:
    kinds = draw(st.lists(st.sampled_from(ACTIONS), max_size=4))
    # regulator actions take effect in the order they are taken (versions 2, 3, ...)
    times = sorted(
        draw(st.lists(st.integers(-2 * DAY, 12 * DAY), min_size=len(kinds), max_size=len(kinds)))
    )
    actions = [
        Action(kind, moment, draw(terms()) if kind == "amend" else None)
        for kind, moment in zip(kinds, times, strict=True)
    ]
    return Grant(grant_id, draw(terms()), actions)


def events(grant: Grant) -> list[Any]:
    """The grant's history as the grant service publishes it."""
    issued_at = at(-5 * DAY)
    out: list[Any] = [
        GrantIssued.model_validate(
            {
                "producer": "grant",
                "occurred_at": issued_at,
                "data": {
                    "grant_id": grant.grant_id,
                    "carveout_id": "co-mythos-2026",
                    "grantee": {"id": GRANTEE, "name": GRANTEE},
                    "model_id": MODEL,
                    "valid_from": at(grant.terms.valid_from),
                    "valid_until": at(grant.terms.valid_until),
                    "conditions": grant.terms.conditions,
                    "issued_by": "regulator",
                },
            }
        )
    ]
    for version, action in enumerate(grant.actions, start=2):
        moment = at(action.at)
        common = {"producer": "grant", "occurred_at": moment}
        if action.kind == "amend":
            assert action.terms is not None
            out.append(
                GrantAmended.model_validate(
                    {
                        **common,
                        "data": {
                            "grant_id": grant.grant_id,
                            "version": version,
                            "valid_from": at(action.terms.valid_from),
                            "valid_until": at(action.terms.valid_until),
                            "conditions": action.terms.conditions,
                            "amended_by": "regulator",
                            "reason": "new terms",
                            "effective_at": moment,
                        },
                    }
                )
            )
        elif action.kind == "revoke":
            out.append(
                CarveoutRevoked.model_validate(
                    {
                        **common,
                        "data": {
                            "carveout_id": "co-mythos-2026",
                            "grant_ids": [grant.grant_id],
                            "reason": "revoked",
                            "revoked_by": "regulator",
                            "effective_at": moment,
                            "grant_versions": {grant.grant_id: version},
                        },
                    }
                )
            )
        else:
            cls = GrantSuspended if action.kind == "suspend" else GrantReinstated
            out.append(
                cls.model_validate(
                    {
                        **common,
                        "data": {
                            "grant_id": grant.grant_id,
                            "version": version,
                            "reason": "because",
                            "by": "regulator",
                            "effective_at": moment,
                        },
                    }
                )
            )
    return out


def compiled(grant: Grant) -> CompiledGrant:
    view: GrantView | None = None
    for change in events(grant):
        view = apply(view, change, grant.grant_id)
    assert view is not None
    return compile_grant(view)


# --------------------------------------------------------------------------- the reference


@dataclass
class State:
    status: str
    version: int
    terms: Terms


def state_at(grant: Grant, t: int) -> State:
    """Replay the actions that had taken effect by ``t``. A revocation is final."""
    state = State("active", 1, grant.terms)
    for version, action in enumerate(grant.actions, start=2):
        if action.at > t or state.status == "revoked":
            break
        if action.kind == "suspend":
            state = State("suspended", version, state.terms)
        elif action.kind == "reinstate":
            state = State("active", version, state.terms)
        elif action.kind == "amend":
            assert action.terms is not None
            state = State(state.status, version, action.terms)
        else:
            state = State("revoked", version, state.terms)
    return state


def lapse(state: State, t: int) -> str | None:
    if state.status in ("revoked", "suspended"):
        return state.status
    if t < state.terms.valid_from:
        return "not_yet_valid"
    if t >= state.terms.valid_until:
        return "expired"
    return None


def violations(
    access: Access, t: int, grant_id: str, state: State, usage: dict[Any, int]
) -> list[dict[str, Any]]:
    found = []
    for c in state.terms.conditions:
        kind = c["kind"]
        broken: tuple[Any, Any] | None = None
        if kind == "user_countries" and c.get("allow") is not None:
            if access.user_country not in c["allow"]:
                broken = ({"allow": c["allow"]}, access.user_country)
        elif kind == "user_countries":
            if access.user_country in c["deny"]:
                broken = ({"deny": c["deny"]}, access.user_country)
        elif kind == "deployment_regions":
            if access.deployment_region not in c["allow"]:
                broken = ({"allow": c["allow"]}, access.deployment_region)
        elif kind == "purposes":
            if access.purpose not in c["allow"]:
                broken = ({"allow": c["allow"]}, access.purpose)
        elif kind == "safeguards":
            missing = [s for s in c["require"] if s not in access.safeguards]
            if missing:
                broken = (
                    {"require": c["require"]},
                    {"attested": sorted(access.safeguards), "missing": sorted(missing)},
                )
        if broken is not None:
            found.append(
                {
                    "condition_id": c["id"],
                    "kind": kind,
                    "severity": c["severity"],
                    "expected": broken[0],
                    "actual": broken[1],
                }
            )
    for c in state.terms.conditions:  # caps after the other kinds, as judge reports them
        if c["kind"] != "usage_cap":
            continue
        size = HOUR if c["window"] == "hour" else DAY
        start = t - t % size
        used = usage.get((grant_id, c["window"], start), 0) + access.units
        if used > c["units"]:
            found.append(
                {
                    "condition_id": c["id"],
                    "kind": "usage_cap",
                    "severity": c["severity"],
                    "expected": {"units": c["units"], "window": c["window"]},
                    "actual": {
                        "units": used,
                        "window_start": datetime.fromtimestamp(start, UTC).isoformat(),
                    },
                }
            )
    return found


def criticals(found: list[dict[str, Any]]) -> int:
    return sum(1 for v in found if v["severity"] == "critical")


# --------------------------------------------------------------------------- accesses


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Grant], Access, int, dict[Any, int]]:
    count = draw(st.integers(1, 3))
    generated = [draw(grants(f"grt_{i}")) for i in range(count)]
    # any moment, or one at an edge: an action's effective_at or a validity bound, +-1 s
    every_terms = [g.terms for g in generated] + [
        a.terms for g in generated for a in g.actions if a.terms is not None
    ]
    edges = [a.at for g in generated for a in g.actions] + [
        bound for terms in every_terms for bound in (terms.valid_from, terms.valid_until)
    ]
    t = draw(
        st.one_of(
            st.integers(-3 * DAY, 12 * DAY),
            st.builds(lambda e, d: e + d, st.sampled_from(edges), st.sampled_from([-1, 0, 1])),
        )
    )
    names = [g.grant_id for g in generated]
    named = draw(st.sampled_from([None, None, *names, "grt_x"]))
    access = Access(
        event_id="0f8e2d7c-5b4a-4c39-8e21-7d6c5b4a3f29",
        occurred_at=float(BASE_S + t),
        request_id="req_1",
        grantee_id=GRANTEE,
        model_id=MODEL,
        grant_id=named,
        user_id="u-1",
        user_country=draw(st.sampled_from([*COUNTRIES, "CU"])),
        deployment_region=draw(st.sampled_from([*REGIONS, "ap-south"])),
        purpose=draw(st.sampled_from([*PURPOSES, "other"])),
        safeguards=frozenset(draw(st.lists(st.sampled_from(SAFEGUARDS), unique=True))),
        units=draw(st.integers(0, 1500)),
        gateway_id="gw-1",
    )
    moment = BASE_S + t
    usage: dict[Any, int] = {}
    for g in generated:
        for window, size in (("hour", HOUR), ("day", DAY)):
            start = moment - moment % size
            usage[(g.grant_id, window, start)] = draw(st.integers(0, 2000))
            usage[(g.grant_id, window, start - size)] = draw(st.integers(0, 5000))  # not counted
    return generated, access, BASE_S + t, usage


@settings(max_examples=80, deadline=None)
@given(scenarios())
def test_judge_agrees_with_the_reference_model(
    scenario: tuple[list[Grant], Access, int, dict[Any, int]],
) -> None:
    generated, access, moment, usage = scenario
    t = moment - BASE_S
    verdict = judge(access, [compiled(g) for g in generated], usage)

    candidates = [g for g in generated if access.grant_id in (None, g.grant_id)]
    states = {g.grant_id: state_at(g, t) for g in candidates}
    in_force = {gid: s for gid, s in states.items() if lapse(s, t) is None}

    event(f"{len(candidates)} candidate(s), {len(in_force)} in force, {verdict.decision}")
    if not in_force:
        event(f"no_active_grant {verdict.violations[0]['actual']}")
        assert verdict.decision == "deny"
        [violation] = verdict.violations
        assert violation["kind"] == violation["condition_id"] == "no_active_grant"
        assert violation["severity"] == "critical"
        if not candidates:
            assert violation["actual"] == "unknown"
            assert (verdict.grant_id, verdict.grant_version) == (None, None)
            return
        reasons = {gid: lapse(s, t) for gid, s in states.items()}
        # the most telling reason wins: a regulator's action before the validity window
        worst = min(reasons.values(), key=lambda r: PRIORITY.index(str(r)))
        assert violation["actual"] == worst
        assert reasons[str(verdict.grant_id)] == worst
        assert verdict.grant_version == states[str(verdict.grant_id)].version
        assert verdict.usage == []
        return

    found = {gid: violations(access, moment, gid, s, usage) for gid, s in in_force.items()}
    # allowed exactly when some grant in force permits the access (warnings at most)
    permits = any(criticals(v) == 0 for v in found.values())
    assert verdict.decision == ("allow" if permits else "deny")
    # the verdict is one grant's, as the reference judges that grant
    assert verdict.grant_id in in_force
    chosen = str(verdict.grant_id)
    assert verdict.grant_version == in_force[chosen].version
    assert verdict.violations == found[chosen]
    assert {v["condition_id"] for v in verdict.violations} == {
        v["condition_id"] for v in found[chosen]
    }
    # a clean grant is preferred, else the one with fewest critical violations
    if any(not v for v in found.values()):
        assert verdict.violations == []
    assert criticals(verdict.violations) == min(criticals(v) for v in found.values())
    assert sorted(verdict.usage) == sorted(
        [(chosen, "hour", moment - moment % HOUR), (chosen, "day", moment - moment % DAY)]
    )


@settings(max_examples=40, deadline=None)
@given(grants("grt_0"), st.integers(-4 * DAY, 14 * DAY))
def test_a_single_grant_gives_the_reference_reason_and_version(grant: Grant, t: int) -> None:
    """With one grant the verdict is fully determined: decision, version and violations."""
    access = Access(
        event_id="0f8e2d7c-5b4a-4c39-8e21-7d6c5b4a3f29",
        occurred_at=float(BASE_S + t),
        request_id="req_1",
        grantee_id=GRANTEE,
        model_id=MODEL,
        grant_id=None,
        user_id="u-1",
        user_country="US",
        deployment_region="us-east",
        purpose="triage",
        safeguards=frozenset({"mfa"}),
        units=700,
        gateway_id="gw-1",
    )
    verdict = judge(access, [compiled(grant)], {})
    state = state_at(grant, t)
    reason = lapse(state, t)
    assert (verdict.grant_id, verdict.grant_version) == ("grt_0", state.version)
    if reason is not None:
        assert verdict.decision == "deny"
        assert [(v["kind"], v["actual"]) for v in verdict.violations] == [
            ("no_active_grant", reason)
        ]
    else:
        expected = violations(access, BASE_S + t, "grt_0", state, {})
        assert verdict.violations == expected
        assert verdict.decision == ("deny" if criticals(expected) else "allow")
