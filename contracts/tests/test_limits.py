"""The field and list limits of DESIGN §10, held by the contract models.

Each case takes a golden event, puts one field just over its limit, and expects a
validation error naming the field and the limit; the same field at its limit is valid.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from carveout_contracts import PoisonMessage, codec, limits, topics
from carveout_contracts.events import (
    AccessRecorded,
    ConditionBreached,
    Envelope,
    GrantAmended,
    GrantIssued,
    GrantSuspended,
)
from carveout_runtime.http import validation_error_body

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def golden(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GOLDEN / f"{name}.v1.json").read_text())
    return loaded


def _condition(kind: str, values: list[str], index: int) -> dict[str, Any]:
    key = {"user_countries": "allow", "safeguards": "require"}.get(kind, "allow")
    return {"id": f"c{index}", "kind": kind, key: values, "severity": "warning"}


def _countries(n: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [a + b for a in letters for b in letters][:n]


Change = Callable[[dict[str, Any], int], None]


def grant_conditions(data: dict[str, Any], n: int) -> None:
    data["conditions"] = [_condition("purposes", ["p"], i) for i in range(n)]


def allow_values(data: dict[str, Any], n: int) -> None:
    data["conditions"] = [_condition("purposes", [f"p{i}" for i in range(n)], 0)]


def deny_countries(data: dict[str, Any], n: int) -> None:
    data["conditions"] = [
        {"id": "embargo", "kind": "user_countries", "deny": _countries(n), "severity": "critical"}
    ]


def require_values(data: dict[str, Any], n: int) -> None:
    data["conditions"] = [_condition("safeguards", [f"s{i}" for i in range(n)], 0)]


def list_string(data: dict[str, Any], n: int) -> None:
    data["conditions"] = [_condition("deployment_regions", ["r" * n], 0)]


def contacts(data: dict[str, Any], n: int) -> None:
    data["grantee"]["contacts"] = [
        {"kind": "email", "address": f"ops{i}@example.com"} for i in range(n)
    ]


def window(data: dict[str, Any], n: int) -> None:
    data["breach_policy"] = {"revoke_after_critical": 3, "window_seconds": n}


def threshold(data: dict[str, Any], n: int) -> None:
    data["breach_policy"] = {"suspend_after_critical": n, "window_seconds": 60}


GRANT_LIMITS: list[tuple[str, Change, int, int, str]] = [
    # (what, change, at the limit, over it, words the error must contain)
    ("conditions", grant_conditions, 64, 65, "at most 64 items"),
    ("allow values", allow_values, 256, 257, "at most 256 items"),
    ("deny countries", deny_countries, 256, 257, "at most 256 items"),
    ("require values", require_values, 256, 257, "at most 256 items"),
    ("list string", list_string, 200, 201, "at most 200 characters"),
    ("contacts", contacts, 16, 17, "at most 16 items"),
    ("window longest", window, limits.MAX_WINDOW_SECONDS, limits.MAX_WINDOW_SECONDS + 1, "2678400"),
    ("window shortest", window, 1, 0, "greater than or equal to 1"),
    ("threshold highest", threshold, 10_000, 10_001, "10000"),
    ("threshold lowest", threshold, 1, 0, "greater than or equal to 1"),
]
FIELD_OF = {
    "conditions": "data.conditions",
    "allow values": "data.conditions.0.purposes.allow",
    "deny countries": "data.conditions.0.user_countries.deny",
    "require values": "data.conditions.0.safeguards.require",
    "list string": "data.conditions.0.deployment_regions.allow.0",
    "contacts": "data.grantee.contacts",
    "window longest": "data.breach_policy.window_seconds",
    "window shortest": "data.breach_policy.window_seconds",
    "threshold highest": "data.breach_policy.suspend_after_critical",
    "threshold lowest": "data.breach_policy.suspend_after_critical",
}


def message_of(exc: ValidationError) -> str:
    return str(validation_error_body(exc.errors())["message"])


@pytest.mark.parametrize("event", [GrantIssued, GrantAmended], ids=["issued", "amended"])
@pytest.mark.parametrize(
    ("what", "change", "at", "over", "words"), GRANT_LIMITS, ids=[c[0] for c in GRANT_LIMITS]
)
def test_grant_terms_are_limited(
    event: type[Envelope], what: str, change: Change, at: int, over: int, words: str
) -> None:
    base = golden("grant.issued" if event is GrantIssued else "grant.amended")
    if what == "contacts" and event is GrantAmended:
        pytest.skip("an amendment carries no contacts")
    within = copy.deepcopy(base)
    change(within["data"], at)
    event.model_validate(within)
    beyond = copy.deepcopy(base)
    change(beyond["data"], over)
    with pytest.raises(ValidationError) as caught:
        event.model_validate(beyond)
    message = message_of(caught.value)
    assert FIELD_OF[what] in message, message
    assert words in message, message


@pytest.mark.parametrize(
    ("event", "name"),
    [(GrantSuspended, "grant.suspended"), (GrantAmended, "grant.amended")],
)
def test_a_reason_is_at_most_2000_characters(event: type[Envelope], name: str) -> None:
    payload = golden(name)
    payload["data"]["reason"] = "r" * limits.MAX_REASON
    event.model_validate(payload)
    payload["data"]["reason"] = "r" * (limits.MAX_REASON + 1)
    with pytest.raises(ValidationError) as caught:
        event.model_validate(payload)
    message = message_of(caught.value)
    assert "data.reason" in message
    assert "at most 2000 characters" in message


def test_an_access_attests_at_most_64_safeguards() -> None:
    payload = golden("access.recorded")
    payload["data"]["safeguards"] = [f"s{i}" for i in range(limits.MAX_SAFEGUARDS)]
    AccessRecorded.model_validate(payload)
    payload["data"]["safeguards"].append("one-more")
    with pytest.raises(ValidationError) as caught:
        AccessRecorded.model_validate(payload)
    assert "data.safeguards: List should have at most 64 items" in message_of(caught.value)


def test_an_access_safeguard_is_at_most_200_characters() -> None:
    payload = golden("access.recorded")
    payload["data"]["safeguards"] = ["s" * 201]
    with pytest.raises(ValidationError) as caught:
        AccessRecorded.model_validate(payload)
    assert "data.safeguards.0" in message_of(caught.value)


def test_an_id_is_bounded_as_sent_and_its_surrounding_space_dropped() -> None:
    """The JSON Schemas say "at most 200 characters": that holds for the text as sent, so a
    client checking against the schema and the service agree on every value."""
    payload = golden("access.recorded")
    payload["data"]["grantee_id"] = "  org-spaced "
    assert AccessRecorded.model_validate(payload).data.grantee_id == "org-spaced"
    for sent in ("\r" + "x" * limits.MAX_ID, "   "):
        payload["data"]["grantee_id"] = sent
        with pytest.raises(ValidationError) as caught:
            AccessRecorded.model_validate(payload)
        assert "data.grantee_id" in message_of(caught.value)


@pytest.mark.parametrize("units", [False, True, 1.5, "3"])
def test_units_are_a_json_integer_and_nothing_else(units: Any) -> None:
    payload = golden("access.recorded")
    payload["data"]["units"] = units
    with pytest.raises(PoisonMessage) as caught:
        codec.decode(topics.ACCESS, json.dumps(payload).encode())
    assert "data.units" in caught.value.error


def test_a_consumed_record_over_a_limit_is_dead_lettered_invalid() -> None:
    payload = golden("access.recorded")
    payload["data"]["safeguards"] = [f"s{i}" for i in range(limits.MAX_SAFEGUARDS + 1)]
    with pytest.raises(PoisonMessage) as caught:
        codec.decode(topics.ACCESS, json.dumps(payload).encode())
    assert caught.value.reason == "invalid"
    assert "safeguards" in caught.value.error


def test_a_breach_has_at_most_one_violation_per_condition_and_one_more() -> None:
    payload = golden("condition.breached")
    violation = payload["data"]["violations"][0]
    payload["data"]["violations"] = [
        {**violation, "condition_id": f"c{i}"} for i in range(limits.MAX_VIOLATIONS)
    ]
    ConditionBreached.model_validate(payload)
    payload["data"]["violations"].append(violation)
    with pytest.raises(ValidationError) as caught:
        ConditionBreached.model_validate(payload)
    assert f"at most {limits.MAX_VIOLATIONS} items" in message_of(caught.value)
