"""Everything enforcement publishes fits (DESIGN §10): a breach event stays under the record
limit whatever the grant and the access, within the contract's limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from carveout_contracts import AccessRecordedData, codec, limits, topics
from carveout_contracts.events import ConditionBreached, GrantIssuedData
from carveout_enforcement.access import Access
from carveout_enforcement.domain import GrantPeriod, GrantView
from carveout_enforcement.judge import LIST_BYTES, bounded, compile_grant, judge
from carveout_enforcement.outcomes import breach_event
from carveout_runtime.settings import SharedSettings

WHEN = datetime(2026, 9, 10, 12, 0, tzinfo=UTC)
RECORD_MAX_BYTES = SharedSettings().record_max_bytes


CONTROL = [chr(c) for c in [*range(0x01, 0x09), *range(0x0E, 0x1C)]]
"""Control characters that are not white space (which the contract strips)."""


def worst(i: int, length: int) -> str:
    """A string of ``length`` control characters (six bytes each in JSON), distinct for
    each ``i`` below 22**4."""
    n = len(CONTROL)
    head = "".join(CONTROL[i // n**k % n] for k in range(4))
    return head + CONTROL[0] * (length - 4)


def values(kind: int) -> list[str]:
    return [
        worst(1000 + kind * 300 + n, limits.MAX_LIST_STRING) for n in range(limits.MAX_LIST_VALUES)
    ]


def condition(n: int, kind: str) -> dict[str, Any]:
    cid = worst(25_000 + n, limits.MAX_ID)
    if kind == "safeguards":
        return {"id": cid, "kind": kind, "require": values(n)}
    return {"id": cid, "kind": kind, "allow": values(n)}


def worst_grant(kinds: list[str]) -> tuple[GrantView, GrantIssuedData]:
    ident = worst(0, limits.MAX_ID)
    conditions = [condition(n, kinds[n % len(kinds)]) for n in range(limits.MAX_CONDITIONS)]
    # The grant the contract accepts: the worst case is within every field limit.
    issued = GrantIssuedData.model_validate(
        {
            "grant_id": ident,
            "carveout_id": ident,
            "grantee": {"id": ident, "name": ident},
            "model_id": ident,
            "valid_from": datetime(2026, 1, 1, tzinfo=UTC),
            "valid_until": datetime(2027, 1, 1, tzinfo=UTC),
            "conditions": conditions,
            "issued_by": ident,
        }
    )
    view = GrantView.model_validate(
        {
            "grant_id": ident,
            "carveout_id": ident,
            "grantee_id": ident,
            "model_id": ident,
            "breach_policy": {},
            "periods": [
                GrantPeriod.model_validate(
                    {
                        "version": 1,
                        "status": "active",
                        "effective_at": None,
                        "valid_from": issued.valid_from,
                        "valid_until": issued.valid_until,
                        "conditions": issued.conditions,
                    }
                )
            ],
            "updated_at": issued.valid_from,
        }
    )
    return view, issued


def worst_access() -> Access:
    ident = worst(0, limits.MAX_ID)
    safeguards = [worst(27_000 + n, limits.MAX_LIST_STRING) for n in range(64)]
    data: dict[str, Any] = {
        "request_id": worst(1, limits.MAX_ID),
        "grantee_id": ident,
        "model_id": ident,
        "grant_id": ident,
        "user_id": worst(2, limits.MAX_ID),
        "user_country": "KP",
        "deployment_region": worst(3, limits.MAX_ID),
        "purpose": worst(4, limits.MAX_ID),
        "safeguards": safeguards,
        "units": 1,
        "gateway_id": worst(5, limits.MAX_ID),
    }
    AccessRecordedData.model_validate(data)  # within the contract too
    return Access(
        event_id="0f8e2d7c-5b4a-4c39-8e21-7d6c5b4a3f29",
        occurred_at=WHEN.timestamp(),
        **{**data, "safeguards": frozenset(safeguards)},
    )


@pytest.mark.parametrize(
    "kinds",
    [["safeguards"], ["purposes"], ["deployment_regions"], ["safeguards", "purposes"]],
    ids=["safeguards", "purposes", "regions", "mixed"],
)
def test_the_worst_breach_fits_in_a_record(kinds: list[str]) -> None:
    view, _ = worst_grant(kinds)
    verdict = judge(worst_access(), [compile_grant(view)], {})
    assert len(verdict.violations) == limits.MAX_CONDITIONS
    value = orjson.dumps(breach_event(worst_access(), verdict))
    assert len(value) <= RECORD_MAX_BYTES, len(value)
    # ... and is a valid breach, which every consumer reads
    event = codec.decode(topics.BREACHES, value)
    assert isinstance(event, ConditionBreached)
    assert len(event.data.violations) == limits.MAX_CONDITIONS


def test_a_cut_list_keeps_its_first_values_and_says_how_many_it_left_out() -> None:
    view, issued = worst_grant(["safeguards"])
    verdict = judge(worst_access(), [compile_grant(view)], {})
    violation = verdict.violations[0]
    expected, actual = violation["expected"], violation["actual"]
    required = issued.conditions[0].require  # type: ignore[union-attr]
    kept = expected["require"]
    assert kept == required[: len(kept)]
    assert 0 < len(kept) < len(required)
    assert expected["require_omitted"] == len(required) - len(kept)
    assert len(orjson.dumps(kept)) <= LIST_BYTES
    assert actual["attested_omitted"] + len(actual["attested"]) == 64
    assert actual["missing_omitted"] + len(actual["missing"]) == len(required)


def test_lists_that_fit_are_reported_whole() -> None:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    countries = [a + b for a in letters for b in letters][: limits.MAX_LIST_VALUES]
    assert bounded("allow", countries) == {"allow": countries}
    assert bounded("missing", ["mfa", "access_logging"]) == {"missing": ["mfa", "access_logging"]}


def test_the_breach_is_the_same_bytes_when_judged_again() -> None:
    """Replay judges with a grant compiled afresh: the cut must not depend on anything else."""
    first = orjson.dumps(
        breach_event(
            worst_access(),
            judge(worst_access(), [compile_grant(worst_grant(["safeguards"])[0])], {}),
        )
    )
    again = orjson.dumps(
        breach_event(
            worst_access(),
            judge(worst_access(), [compile_grant(worst_grant(["safeguards"])[0])], {}),
        )
    )
    assert first == again
