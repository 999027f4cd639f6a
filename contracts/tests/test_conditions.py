"""Grant conditions, breach policy, grant terms and contacts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from carveout_contracts.conditions import (
    CONDITION_KINDS,
    BreachPolicy,
    Condition,
    DeploymentRegions,
    Purposes,
    Safeguards,
    UsageCap,
    UserCountries,
)
from carveout_contracts.events import (
    Contact,
    GrantAmendedData,
    GrantIssued,
    GrantIssuedData,
)

Golden = Callable[[str], dict[str, Any]]
CONDITION: TypeAdapter[Any] = TypeAdapter(Condition)
CONDITIONS: TypeAdapter[list[Any]] = TypeAdapter(list[Condition])


def test_design_example_conditions_parse_into_their_kinds(
    flat_conditions: list[dict[str, Any]],
) -> None:
    parsed = CONDITIONS.validate_python(flat_conditions)
    assert [type(c) for c in parsed] == [
        UserCountries,
        UserCountries,
        DeploymentRegions,
        Purposes,
        Safeguards,
        UsageCap,
    ]
    assert {c.kind for c in parsed} == set(CONDITION_KINDS)
    countries, embargo, regions, purpose, safeguards, cap = parsed
    assert countries.allow == ["US", "GB", "IN"]
    assert countries.deny is None
    assert embargo.deny == ["KP", "IR", "CU", "SY", "RU"]
    assert embargo.allow is None
    assert regions.allow == ["us-east", "us-west"]
    assert purpose.allow == ["vulnerability-scanning"]
    assert purpose.severity == "warning"
    assert safeguards.require == ["access_logging", "mfa"]
    assert cap.units == 1_000_000
    assert cap.window == "day"
    assert cap.severity == "warning"


def test_conditions_parse_from_json_too(flat_conditions: list[dict[str, Any]]) -> None:
    from_json = CONDITIONS.validate_json(json.dumps(flat_conditions))
    assert from_json == CONDITIONS.validate_python(flat_conditions)


def test_conditions_round_trip(flat_conditions: list[dict[str, Any]]) -> None:
    parsed = CONDITIONS.validate_python(flat_conditions)
    again = CONDITIONS.validate_json(CONDITIONS.dump_json(parsed))
    assert again == parsed


def test_severity_defaults_to_critical() -> None:
    condition = CONDITION.validate_python({"id": "r", "kind": "purposes", "allow": ["research"]})
    assert condition.severity == "critical"


@pytest.mark.parametrize(
    "condition",
    [
        {"id": "x", "kind": "user_countries", "allow": ["US"], "deny": ["KP"]},
        {"id": "x", "kind": "user_countries"},
        {"id": "x", "kind": "user_countries", "allow": None, "deny": None},
    ],
    ids=["both", "neither", "both-null"],
)
def test_user_countries_takes_exactly_one_list(condition: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one of 'allow' or 'deny'"):
        CONDITION.validate_python(condition)


def test_country_codes_are_normalised_to_upper_case() -> None:
    condition = CONDITION.validate_python(
        {"id": "c", "kind": "user_countries", "allow": ["us", "Gb", " in "]}
    )
    assert condition.allow == ["US", "GB", "IN"]
    deny = CONDITION.validate_python({"id": "e", "kind": "user_countries", "deny": ["kp"]})
    assert deny.deny == ["KP"]


@pytest.mark.parametrize("code", ["USA", "U", "", "1A", "U S"])
def test_country_codes_must_be_two_letters(code: str) -> None:
    with pytest.raises(ValidationError):
        CONDITION.validate_python({"id": "c", "kind": "user_countries", "allow": [code]})


@pytest.mark.parametrize(
    "condition",
    [
        {"id": "x", "kind": "teleportation", "allow": ["anywhere"]},
        {"id": "x", "allow": ["US"]},
        {"id": "", "kind": "purposes", "allow": ["research"]},
        {"id": "x", "kind": "purposes", "allow": []},
        {"id": "x", "kind": "deployment_regions", "allow": []},
        {"id": "x", "kind": "safeguards", "require": []},
        {"id": "x", "kind": "usage_cap", "units": 0, "window": "day"},
        {"id": "x", "kind": "usage_cap", "units": -1, "window": "day"},
        {"id": "x", "kind": "usage_cap", "units": 10, "window": "week"},
        {"id": "x", "kind": "usage_cap", "units": 10},
        {"id": "x", "kind": "purposes", "allow": ["research"], "severity": "fatal"},
    ],
    ids=[
        "unknown-kind",
        "no-kind",
        "empty-id",
        "empty-purposes",
        "empty-regions",
        "empty-safeguards",
        "zero-cap",
        "negative-cap",
        "bad-window",
        "no-window",
        "bad-severity",
    ],
)
def test_invalid_conditions_are_rejected(condition: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CONDITION.validate_python(condition)


def test_usage_cap_hour_window() -> None:
    cap = CONDITION.validate_python({"id": "h", "kind": "usage_cap", "units": 5, "window": "hour"})
    assert isinstance(cap, UsageCap)
    assert cap.window == "hour"


def test_breach_policy_defaults_and_bounds() -> None:
    assert BreachPolicy() == BreachPolicy(
        suspend_after_critical=None, revoke_after_critical=None, window_seconds=3600
    )
    policy = BreachPolicy.model_validate(
        {"suspend_after_critical": None, "revoke_after_critical": 3, "window_seconds": 3600}
    )
    assert policy.revoke_after_critical == 3
    for bad in (
        {"revoke_after_critical": 0},
        {"window_seconds": 0},
        {"suspend_after_critical": -1},
    ):
        with pytest.raises(ValidationError):
            BreachPolicy.model_validate(bad)


# --------------------------------------------------------------------------- grant terms


def test_duplicate_condition_ids_are_rejected_on_issue(golden: Golden) -> None:
    raw = golden("grant.issued")
    raw["data"]["conditions"].append(
        {"id": "countries", "kind": "purposes", "allow": ["research"], "severity": "warning"}
    )
    with pytest.raises(ValidationError, match="condition id 'countries' appears more than once"):
        GrantIssued.model_validate(raw)


def test_duplicate_condition_ids_are_rejected_on_amend(golden: Golden) -> None:
    data = golden("grant.amended")["data"]
    data["conditions"].append(dict(data["conditions"][-1]))
    with pytest.raises(ValidationError, match="condition id 'cap' appears more than once"):
        GrantAmendedData.model_validate(data)


@pytest.mark.parametrize(
    "valid_until", ["2026-06-28T00:00:00Z", "2026-06-27T23:59:59Z", "2026-06-28T02:00:00+02:00"]
)
@pytest.mark.parametrize("model", [GrantIssuedData, GrantAmendedData], ids=["issued", "amended"])
def test_validity_window_must_be_ordered(
    golden: Golden, model: type[GrantIssuedData | GrantAmendedData], valid_until: str
) -> None:
    etype = "grant.issued" if model is GrantIssuedData else "grant.amended"
    data = golden(etype)["data"]
    data["valid_from"] = "2026-06-28T00:00:00Z"
    data["valid_until"] = valid_until
    with pytest.raises(ValidationError, match="valid_until must be later than valid_from"):
        model.model_validate(data)


def test_grant_without_conditions_gets_default_policy(golden: Golden) -> None:
    data = golden("grant.issued")["data"]
    del data["conditions"]
    del data["breach_policy"]
    parsed = GrantIssuedData.model_validate(data)
    assert parsed.conditions == []
    assert parsed.breach_policy == BreachPolicy()


def test_grant_issued_data_version_is_one(golden: Golden) -> None:
    data = golden("grant.issued")["data"]
    data["version"] = 2
    with pytest.raises(ValidationError):
        GrantIssuedData.model_validate(data)


# --------------------------------------------------------------------------- contacts


@pytest.mark.parametrize(
    "address",
    [
        "https://hooks.example.com/carveout",
        "http://localhost:9000/hook",
        "https://hooks.example.com:8443/carveout?team=netsec",
    ],
)
def test_webhook_contact_accepts_http_urls(address: str) -> None:
    assert Contact(kind="webhook", address=address).address == address


@pytest.mark.parametrize(
    "address",
    [
        "ftp://hooks.example.com/carveout",
        "mailto:ops@example.com",
        "ops@example.com",
        "hooks.example.com/carveout",
        "not a url",
        "/relative/path",
    ],
)
def test_webhook_contact_rejects_non_http_addresses(address: str) -> None:
    with pytest.raises(ValidationError):
        Contact(kind="webhook", address=address)


def test_email_contact_accepts_an_email() -> None:
    contact = Contact(kind="email", address="security@netsec.example.com")
    assert contact.address == "security@netsec.example.com"


@pytest.mark.parametrize(
    "address",
    ["https://hooks.example.com/carveout", "not-an-email", "a@", "@example.com", "a b@example.com"],
)
def test_email_contact_rejects_non_emails(address: str) -> None:
    with pytest.raises(ValidationError):
        Contact(kind="email", address=address)


def test_contact_kind_is_checked() -> None:
    with pytest.raises(ValidationError):
        Contact.model_validate({"kind": "sms", "address": "+15555550100"})


def test_bad_contact_inside_a_grant_is_rejected(golden: Golden) -> None:
    raw = golden("grant.issued")
    raw["data"]["grantee"]["contacts"].append({"kind": "email", "address": "nobody"})
    with pytest.raises(ValidationError, match="contacts"):
        GrantIssued.model_validate(raw)
