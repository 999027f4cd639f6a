"""Deciding a would-be access from memory, recording nothing: the one ``decide``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from carveout_contracts.consistency import encode_token

from ..access import Access
from ..freshness import Freshness
from ..handlers.grants import GrantIndex
from ..judge import UsageKey, judge
from ..settings import EnforcementSettings
from .wire import Question


@dataclass(frozen=True, slots=True)
class Consistency:
    """Whether the request named a regulator action to reflect, whether it does, and how
    long the decision waited for it."""

    required: bool
    met: bool
    waited_ms: float


@dataclass(frozen=True, slots=True)
class DecisionAnswer:
    """Allow or deny, the violations found, the grant version judged against and a token
    naming it, and whether the answer reflects the action the request named."""

    decision: Literal["allow", "deny"]
    violations: list[dict[str, Any]]
    grant_id: str | None
    grant_version: int | None
    consistency_token: str | None
    consistency: Consistency


@dataclass(frozen=True, slots=True)
class DecisionState:
    """What decisions are answered from, all in memory, and the bounds they hold to."""

    grants: GrantIndex
    usage: Mapping[UsageKey, int]
    """The usage totals of the accesses recorded (asking counts nothing)."""
    freshness: Freshness
    settings: EnforcementSettings
    """``stale_after_seconds``, ``consistency_wait_seconds``, ``max_future_skew_seconds``."""


def _stale(expected: dict[str, Any], actual: str) -> dict[str, Any]:
    return {
        "condition_id": "stale",
        "kind": "stale",
        "severity": "critical",
        "expected": expected,
        "actual": actual,
    }


def _denied(violation: dict[str, Any], consistency: Consistency) -> DecisionAnswer:
    return DecisionAnswer("deny", [violation], None, None, None, consistency)


async def decide(question: Question, state: DecisionState, now: float) -> DecisionAnswer:
    """Judge a would-be access as of ``now`` (or its ``occurred_at``), recording nothing.

    Fails closed (``deny``, kind ``stale``) when enforcement cannot show it is caught up on
    the grants log, or has not applied the action named by ``min_consistency`` in time.
    """
    settings, grants = state.settings, state.grants
    versions = question.versions
    required = versions is not None
    waited_ms = 0.0
    if versions is not None and not grants.has_applied(versions):
        started = time.perf_counter()
        met = await grants.wait_for(versions, settings.consistency_wait_seconds)
        waited_ms = round((time.perf_counter() - started) * 1000, 3)
        if not met:
            not_applied = _stale(
                {"min_consistency": question.min_consistency},
                f"not applied within {settings.consistency_wait_seconds}s",
            )
            return _denied(not_applied, Consistency(True, False, waited_ms))
    if not state.freshness.fresh(settings.stale_after_seconds):
        behind = _stale(
            {"grants_log_within_s": settings.stale_after_seconds},
            "cannot show the grants log is caught up",
        )
        # A required token was met above: freshness is what failed.
        return _denied(behind, Consistency(required, required, waited_ms))
    occurred = now if question.occurred_at is None else question.occurred_at
    access = Access.of_facts("", occurred, question.request_id, question.facts)
    verdict = judge(access, grants.candidates(access.grantee_id, access.model_id), state.usage)
    token = None
    if verdict.grant_id is not None:
        current = grants.get(verdict.grant_id)
        token = encode_token({verdict.grant_id: current.version if current else 0})
    return DecisionAnswer(
        decision=verdict.decision,
        violations=verdict.violations,
        grant_id=verdict.grant_id,
        grant_version=verdict.grant_version,
        consistency_token=token,
        consistency=Consistency(required=required, met=True, waited_ms=waited_ms),
    )
