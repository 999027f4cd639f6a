"""Judging a batch (``outcomes.judge_batch``): typed rows, usage counted in order without
touching the totals it was given, the same whether judged whole or a slice at a time; and
the late-grant guard's wait (``freshness.late_grant_wait``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from carveout_enforcement.freshness import late_grant_wait
from carveout_enforcement.judge import CompiledGrant, usage_keys
from carveout_enforcement.outcomes import Judgement, judge_batch

from .test_judge import NOON, access, grant

CAP = [{"id": "cap", "kind": "usage_cap", "units": 25, "window": "hour"}]


def batch(*units: int) -> list[tuple[Any, int | None]]:
    return [(access(event_id=str(uuid.uuid4()), units=n), None) for n in units]


def candidates_of(*grants: CompiledGrant) -> Any:
    def candidates(grantee_id: str, model_id: str, appended_ms: int | None) -> list[CompiledGrant]:
        return list(grants)

    return candidates


def test_usage_is_counted_in_order_and_the_totals_given_are_left_alone() -> None:
    hour, day = usage_keys("grt_A", NOON.timestamp())
    before = {hour: 5}
    judged = judge_batch(batch(10, 10, 10), candidates_of(grant(conditions=CAP)), before, 7)

    assert [d.decision for d in judged.decisions] == ["allow", "allow", "deny"]
    assert [d.units for d in judged.decisions] == [10, 10, 10]
    assert {d.judged_at for d in judged.decisions} == {7}
    assert judged.usage == {hour: 35, day: 30}
    assert before == {hour: 5}  # nothing to undo when the batch is not recorded
    [breach] = judged.breaches
    assert breach.access_event_id == judged.decisions[2].access_event_id
    assert (breach.severity, breach.published_at, breach.traceparent) == ("critical", None, None)


def test_a_batch_judged_a_slice_at_a_time_is_judged_as_a_whole() -> None:
    accesses = batch(10, 10, 10, 3)  # over the cap in the second slice
    candidates = candidates_of(grant(conditions=CAP))
    whole = judge_batch(accesses, candidates, {}, 1)
    sliced = Judgement()
    for start in range(0, len(accesses), 2):
        part = accesses[start : start + 2]
        sliced.extend(judge_batch(part, candidates, {}, 1, sliced.usage))
    assert sliced == whole
    assert [d.decision for d in whole.decisions] == ["allow", "allow", "deny", "deny"]


@pytest.mark.parametrize(
    ("newest_age_s", "guard_s", "wait_s"),
    [
        (0.0, 0.05, 0.05),  # just happened: the whole guard
        (0.02, 0.05, 0.03),  # the rest of it
        (3.0, 0.05, 0.0),  # old enough
        (-240.0, 0.05, 0.05),  # stamped ahead of the clock: the guard, no longer
        (0.0, 0.0, 0.0),  # no guard
        (0.0, -1.0, 0.0),
    ],
)
def test_late_grant_wait(newest_age_s: float, guard_s: float, wait_s: float) -> None:
    now = NOON.timestamp()
    assert late_grant_wait(now - newest_age_s, guard_s, now) == pytest.approx(wait_s)
