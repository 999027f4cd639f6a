"""Forms and the API's bodies: a regulator's form (or pasted JSON) made into the request the
grant service takes, and the service's 422 errors put back beside the fields they name."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

EXAMPLE_CONDITIONS: list[dict[str, Any]] = [
    {"id": "embargo", "kind": "user_countries", "deny": ["KP", "IR", "CU", "SY", "RU"],
     "severity": "critical"},
]  # fmt: skip
ISSUE_FIELDS = (
    "carveout_id", "model_id", "grantee_id", "grantee_name", "contact_kind", "contact_address",
    "valid_from", "valid_until", "conditions", "suspend_after_critical",
    "revoke_after_critical", "window_seconds", "grant_json",
)  # fmt: skip
AMEND_FIELDS = (
    "valid_from", "valid_until", "conditions", "suspend_after_critical",
    "revoke_after_critical", "window_seconds", "reason",
)  # fmt: skip
API_FIELD_TO_FORM = {
    "grantee.id": "grantee_id",
    "grantee.name": "grantee_name",
    "grantee.contacts": "contact_address",
    "breach_policy.suspend_after_critical": "suspend_after_critical",
    "breach_policy.revoke_after_critical": "revoke_after_critical",
    "breach_policy.window_seconds": "window_seconds",
}


@dataclass
class Filled:
    """A form as filled in, and what is wrong with it, by form field."""

    values: dict[str, str]
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


def filled(form: Mapping[str, Any], names: tuple[str, ...]) -> Filled:
    return Filled({name: str(form.get(name) or "") for name in names})


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def blank_issue_form(now: datetime) -> Filled:
    return Filled(
        {
            **dict.fromkeys(ISSUE_FIELDS, ""),
            "contact_kind": "none",
            "valid_from": _rfc3339(now),
            "valid_until": _rfc3339(now + timedelta(days=90)),
            "conditions": json.dumps(EXAMPLE_CONDITIONS, indent=2),
            "revoke_after_critical": "3",
            "window_seconds": "3600",
        }
    )


def amend_form_of(grant: Mapping[str, Any]) -> Filled:
    """The amend form filled with a grant's current terms."""
    policy = grant.get("breach_policy") or {}
    return Filled(
        {
            "valid_from": str(grant.get("valid_from", "")),
            "valid_until": str(grant.get("valid_until", "")),
            "conditions": json.dumps(grant.get("conditions", []), indent=2),
            "suspend_after_critical": _text(policy.get("suspend_after_critical")),
            "revoke_after_critical": _text(policy.get("revoke_after_critical")),
            "window_seconds": _text(policy.get("window_seconds")),
            "reason": "",
        }
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(form: Filled, name: str) -> int | str | None:
    """A whole number field: blank is ``None``; anything else goes to the API as typed,
    so that its own message says what is wrong."""
    raw = form.values[name].strip()
    if not raw:
        return None
    return int(raw) if raw.lstrip("-").isdigit() else raw


def _json_field(form: Filled, name: str) -> Any:
    try:
        return json.loads(form.values[name] or "[]")
    except json.JSONDecodeError as exc:
        form.add(name, f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
        return None


def _terms(form: Filled) -> dict[str, Any]:
    policy = {
        "suspend_after_critical": _number(form, "suspend_after_critical"),
        "revoke_after_critical": _number(form, "revoke_after_critical"),
    }
    window = _number(form, "window_seconds")
    if window is not None:
        policy["window_seconds"] = window
    return {
        "valid_from": form.values["valid_from"].strip(),
        "valid_until": form.values["valid_until"].strip(),
        "conditions": _json_field(form, "conditions"),
        "breach_policy": policy,
    }


def issue_body(form: Filled) -> dict[str, Any] | None:
    """The ``POST /v1/grants`` body: the pasted JSON when there is some, else the fields;
    ``None`` (with ``form.errors``) when it cannot even be written."""
    if form.values["grant_json"].strip():
        body = _json_field(form, "grant_json")
        if body is not None and not isinstance(body, dict):
            form.add("grant_json", "must be one JSON object: the grant to issue")
            return None
        return body if isinstance(body, dict) else None
    contacts = []
    if form.values["contact_kind"] in ("webhook", "email"):
        contacts.append(
            {"kind": form.values["contact_kind"], "address": form.values["contact_address"]}
        )
    body = {
        "carveout_id": form.values["carveout_id"].strip(),
        "model_id": form.values["model_id"].strip(),
        "grantee": {
            "id": form.values["grantee_id"].strip(),
            "name": form.values["grantee_name"].strip(),
            "contacts": contacts,
        },
        **_terms(form),
    }
    return None if form.errors else body


def amend_body(form: Filled) -> dict[str, Any] | None:
    body = {**_terms(form), "reason": form.values["reason"]}
    return None if form.errors else body


def place_api_errors(form: Filled, errors: Mapping[str, list[str]]) -> None:
    """Each API error beside its form field; a pasted grant's errors all go to its box,
    each prefixed with the field it names."""
    pasted = bool(form.values.get("grant_json", "").strip())
    for api_field, messages in errors.items():
        if pasted:
            for message in messages:
                form.add("grant_json", f"{api_field}: {message}")
            continue
        name = _form_field(api_field, form.values)
        for message in messages:
            form.add(name, message if name != "request" else f"{api_field}: {message}")


def _form_field(api_field: str, names: Mapping[str, str]) -> str:
    for prefix, name in API_FIELD_TO_FORM.items():
        if api_field == prefix or api_field.startswith(prefix + "."):
            return name
    head = api_field.split(".", 1)[0]
    return head if head in names else "request"
