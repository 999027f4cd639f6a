"""What judging accesses leaves: decision rows, breach events in their wire format, and the
usage they count; the decisions and breaches metrics.

Pure over its inputs (the accesses, the grants that may cover them, the usage totals it
updates), apart from the counters; the access pipeline records and publishes what it
returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import Counter

from .access import Access
from .judge import UsageKey, Verdict, breach_id, judge, uuid5_str

SERVICE = "enforcement"

DECISIONS = Counter("carveout_decisions", "Accesses judged", ["decision"])
BREACHES = Counter("carveout_breaches", "Breaches found", ["severity"])
ALLOWED, DENIED = DECISIONS.labels("allow"), DECISIONS.labels("deny")
BREACHES_BY_SEVERITY = {s: BREACHES.labels(s) for s in ("critical", "warning")}
"""The children counted on every slice, looked up once."""

USAGE_CEILING = 2**62
"""Usage totals saturate here: far past any cap, and inside every store's 64-bit integers."""

Candidates = Callable[[str, str, int | None], Any]
"""The grants that may cover an access: by grantee, model and the record's timestamp."""


def span_attributes(breach: dict[str, Any]) -> dict[str, str]:
    return {
        "carveout.breach_id": str(breach["breach_id"]),
        "carveout.access_event_id": str(breach["access_event_id"]),
        "carveout.grant_id": str(breach["grant_id"] or ""),
        "carveout.severity": str(breach["severity"]),
    }


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


def judge_slice(
    accesses: Sequence[tuple[Access, int | None]],
    candidates: Candidates,
    usage: dict[UsageKey, int],
    before: dict[UsageKey, int | None],
    judged_at: int,
) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
    """Judge accesses in order, counting their usage in ``usage`` as it goes (``before``
    keeps the totals as they were, to put back if the batch is not recorded).

    Each access comes with its record timestamp: grants the log received after it do not
    cover it (``candidates`` answers for a grantee, model and timestamp). Returns the
    decision rows, in the decisions table's column order, and the breach rows.
    """
    decisions: list[tuple[Any, ...]] = []
    breaches: list[dict[str, Any]] = []
    allowed = 0
    found = {"critical": 0, "warning": 0}
    for access, appended_ms in accesses:
        verdict = judge(access, candidates(access.grantee_id, access.model_id, appended_ms), usage)
        for key in verdict.usage:
            old = usage.get(key)
            if key not in before:
                before[key] = old
            usage[key] = min((old or 0) + access.units, USAGE_CEILING)
        occurred = access.occurred_us
        decisions.append(  # in the decisions table's column order
            (
                access.event_id,
                access.request_id,
                access.grantee_id,
                access.model_id,
                verdict.grant_id,
                verdict.grant_version,
                verdict.decision,
                orjson.dumps(verdict.violations).decode() if verdict.violations else "[]",
                occurred,
                judged_at,
                access.user_id,
                access.gateway_id,
                access.units,
            )
        )
        if verdict.decision == "allow":
            allowed += 1
        if verdict.violations:
            event = breach_event(access, verdict)
            severity = event["data"]["severity"]
            breaches.append(
                {
                    "breach_id": event["data"]["breach_id"],
                    "access_event_id": access.event_id,
                    "grant_id": verdict.grant_id,
                    "grantee_id": access.grantee_id,
                    "severity": severity,
                    "occurred_at": occurred,
                    "payload": orjson.dumps(event).decode(),
                    "published_at": None,
                    "traceparent": None,
                }
            )
            found[severity] += 1
    for severity, count in found.items():
        if count:
            BREACHES_BY_SEVERITY[severity].inc(count)
    ALLOWED.inc(allowed)
    DENIED.inc(len(accesses) - allowed)
    return decisions, breaches
