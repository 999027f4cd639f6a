"""What judging a batch of accesses leaves: decision rows, breach rows with their events in
the wire format, and the usage totals they count; the decisions and breaches metrics.

:func:`judge_batch` is pure over its inputs (the accesses with their append times, the
grants that may cover them, the usage totals, when it judges), apart from the counters: it
changes none of them, so a batch that is not recorded leaves nothing to undo. The access
pipeline records what it returns, then applies the usage and publishes the breaches.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import Counter

from .access import Access, Arrival
from .judge import CompiledGrant, UsageKey, Verdict, breach_id, judge, uuid5_str
from .rows import BreachRow, DecisionRow

SERVICE = "enforcement"

DECISIONS = Counter("carveout_decisions", "Accesses judged", ["decision"])
BREACHES = Counter("carveout_breaches", "Breaches found", ["severity"])
ALLOWED, DENIED = DECISIONS.labels("allow"), DECISIONS.labels("deny")
BREACHES_BY_SEVERITY = {s: BREACHES.labels(s) for s in ("critical", "warning")}
"""The children counted on every slice, looked up once."""

USAGE_CEILING = 2**62
"""Usage totals saturate here: far past any cap, and inside every store's 64-bit integers."""

Candidates = Callable[[str, str, int | None], Sequence[CompiledGrant]]
"""The grants that may cover an access: by grantee, model and the record's timestamp."""


def _utc(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def breach_event(access: Access, verdict: Verdict) -> dict[str, Any]:
    """The ``condition.breached`` event for a judged access, as the JSON object published.

    Built directly rather than through the pydantic model, as it is on the hot path; a
    test holds it to the contract (it must decode to an equal ``ConditionBreached``).
    Every field is derived from the access and the grant version, so the same access
    judged again yields the same event, ids included.
    """
    bid = breach_id(access.event_id, verdict.grant_id, verdict.grant_version)
    occurred = _utc(access.occurred_at)
    return {
        "event_id": uuid5_str(uuid.NAMESPACE_URL, bid),
        "type": "condition.breached",
        "version": 1,
        "occurred_at": occurred,
        "producer": SERVICE,
        "key": verdict.grant_id or access.grantee_id,
        "data": {
            "breach_id": bid,
            "grant_id": verdict.grant_id,
            "grant_version": verdict.grant_version,
            "grantee_id": access.grantee_id,
            "model_id": access.model_id,
            "access_event_id": access.event_id,
            "request_id": access.request_id,
            "severity": verdict.severity,
            "violations": verdict.violations,
            "access_occurred_at": occurred,
            "user_id": access.user_id,
            "gateway_id": access.gateway_id,
        },
    }


class UsageSoFar:
    """Usage totals as judging a batch sees them: what it counted, over the totals before
    it, which it only reads."""

    __slots__ = ("before", "counted")

    def __init__(self, before: Mapping[UsageKey, int], counted: Mapping[UsageKey, int]) -> None:
        self.before = before
        self.counted = dict(counted)

    def get(self, key: UsageKey, default: int = 0) -> int:
        total = self.counted.get(key)
        return self.before.get(key, default) if total is None else total

    def count(self, key: UsageKey, units: int) -> None:
        self.counted[key] = min(self.get(key) + units, USAGE_CEILING)


@dataclass(slots=True)
class Judgement:
    """What judging leaves: rows to record, and the usage totals to apply once they are."""

    decisions: list[DecisionRow] = field(default_factory=list)
    breaches: list[BreachRow] = field(default_factory=list)
    usage: dict[UsageKey, int] = field(default_factory=dict)
    """The new total of every usage window the accesses counted towards."""

    def extend(self, later: Judgement) -> None:
        """Add what judging the next accesses of the same batch left."""
        self.decisions += later.decisions
        self.breaches += later.breaches
        self.usage.update(later.usage)


def judge_batch(
    accesses: Sequence[Arrival],
    candidates: Candidates,
    usage: Mapping[UsageKey, int],
    judged_at: int,
    counted: Mapping[UsageKey, int] | None = None,
) -> Judgement:
    """Judge accesses in order, each seeing the usage the ones before it counted.

    ``usage`` holds the totals before the batch and ``counted`` the totals its earlier
    accesses left (a batch is judged a slice at a time); neither is changed. Grants the
    log received after an access do not cover it (``candidates`` answers for a grantee,
    model and append time). ``judged_at`` is epoch microseconds.
    """
    judged = Judgement()
    decisions, breaches = judged.decisions, judged.breaches
    so_far = UsageSoFar(usage, counted or {})
    allowed = 0
    found = {"critical": 0, "warning": 0}
    for access, appended_ms in accesses:
        grants = candidates(access.grantee_id, access.model_id, appended_ms)
        verdict = judge(access, grants, so_far, appended_ms)
        for key in verdict.usage:
            so_far.count(key, access.units)
        occurred = access.occurred_us
        violations = orjson.dumps(verdict.violations).decode() if verdict.violations else "[]"
        decisions.append(
            DecisionRow(
                access_event_id=access.event_id,
                request_id=access.request_id,
                grantee_id=access.grantee_id,
                model_id=access.model_id,
                grant_id=verdict.grant_id,
                grant_version=verdict.grant_version,
                decision=verdict.decision,
                violations=violations,
                occurred_at=occurred,
                judged_at=judged_at,
                user_id=access.user_id,
                gateway_id=access.gateway_id,
                units=access.units,
            )
        )
        if verdict.decision == "allow":
            allowed += 1
        if verdict.violations:
            event = breach_event(access, verdict)
            severity = event["data"]["severity"]
            breaches.append(
                BreachRow(
                    breach_id=event["data"]["breach_id"],
                    access_event_id=access.event_id,
                    grant_id=verdict.grant_id,
                    grantee_id=access.grantee_id,
                    severity=severity,
                    occurred_at=occurred,
                    payload=orjson.dumps(event).decode(),
                )
            )
            found[severity] += 1
    for severity, count in found.items():
        if count:
            BREACHES_BY_SEVERITY[severity].inc(count)
    ALLOWED.inc(allowed)
    DENIED.inc(len(accesses) - allowed)
    judged.usage = so_far.counted
    return judged
