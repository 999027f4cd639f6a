"""An access's attributes as LiteLLM's proxy knows them: the caller's key, the request's
``x-carveout-*`` headers, and the call itself.

Where the proxy issues keys, a key's metadata binds it: ``{"carveout": {"grantee_id":
"org-netsec", "user_country": "GB", ...}}`` (the decision API's field names), and what
the key says wins over what a request's headers say, so a caller cannot speak for
another grantee. Otherwise the headers are those of the authorization endpoint
(DESIGN §14). The model defaults to the call's, the user to the call's ``user`` or the
key's user, the region to ``CARVEOUT_GATEWAY_REGION``, the request id to LiteLLM's call id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carveout_contracts.common import MAX_UNITS

from .settings import CallbackSettings

HEADER_OF = {
    "grantee_id": "x-carveout-grantee",
    "model_id": "x-carveout-model",
    "user_id": "x-carveout-user",
    "user_country": "x-carveout-user-country",
    "deployment_region": "x-carveout-region",
    "purpose": "x-carveout-purpose",
    "safeguards": "x-carveout-safeguards",
    "units": "x-carveout-units",
    "request_id": "x-carveout-request-id",
}
"""The decision request's fields, and the request header that may carry each."""
KEY_METADATA = "carveout"
"""Where a key's metadata binds the fields it decides."""


class AttributeProblem(ValueError):
    """An attribute a header cannot carry, naming the header."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(f"{header}: {message}")
        self.header = header


def _units(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 16) or int(text) > MAX_UNITS:
        raise AttributeProblem(
            "x-carveout-units", f"must be a whole number from 0 to {MAX_UNITS}, in digits"
        )
    return int(text)


def from_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    """The fields a request's ``x-carveout-*`` headers give (names in any case)."""
    lower = {name.lower(): value for name, value in headers.items()}
    found: dict[str, Any] = {}
    for field, header in HEADER_OF.items():
        value = lower.get(header)
        if value is None:
            continue
        if field == "safeguards":
            found[field] = [item.strip() for item in value.split(",") if item.strip()]
        elif field == "units":
            found[field] = _units(value.strip())
        else:
            found[field] = value
    return found


def from_key(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields a key's metadata binds (``{"carveout": {...}}``)."""
    bound = (metadata or {}).get(KEY_METADATA)
    if not isinstance(bound, Mapping):
        return {}
    return {field: bound[field] for field in HEADER_OF if field in bound}


def decision_request(
    headers: Mapping[str, str],
    key_metadata: Mapping[str, Any] | None,
    *,
    model: str | None,
    user: str | None,
    call_id: str | None,
    settings: CallbackSettings,
) -> dict[str, Any]:
    """The body of ``POST /v1/decisions`` for a call, before it is made (units as the
    headers say, else 0: tokens are counted once the call is done)."""
    fields = {**from_headers(headers), **from_key(key_metadata)}
    defaults = {
        "model_id": model,
        "user_id": user,
        "deployment_region": settings.gateway_region,
        "request_id": call_id,
    }
    for field, value in defaults.items():
        if field not in fields and value:
            fields[field] = value
    fields["gateway_id"] = settings.gateway_id
    return fields
