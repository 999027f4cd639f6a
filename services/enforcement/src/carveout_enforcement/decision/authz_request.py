"""What a gateway asks the authorization endpoint, read from its ``x-carveout-*`` headers.

Envoy's ``ext_authz`` and nginx's ``auth_request`` forward the client's request (method,
path, headers) and nothing else, so an access's attributes travel as headers (DESIGN §14).
Each header is held to the bound of the field it carries: the values go through the same
reader as a decision request's JSON (:func:`~.wire.read_fields`), and an error names the
header and the limit it broke. Before any value is decoded, a header's size is bounded,
and so is the number of ``x-carveout-*`` lines.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from carveout_contracts import limits
from carveout_contracts.common import MAX_UNITS
from carveout_runtime.auth import Caller, bound_gateway_id
from carveout_runtime.http import validation_error_body

from .wire import BadRequest, Question, read_fields

PREFIX = b"x-carveout-"
TOKEN = b"x-carveout-gateway-token"
RECORD = b"x-carveout-record"
SAFEGUARDS = b"x-carveout-safeguards"
UNITS = b"x-carveout-units"
PROXY_REQUEST_ID = b"x-request-id"
"""The request id Envoy (and many proxies) give every request: the one recorded when the
gateway sends no ``x-carveout-request-id``."""

FIELDS: dict[bytes, str] = {
    b"x-carveout-grantee": "grantee_id",
    b"x-carveout-model": "model_id",
    b"x-carveout-user": "user_id",
    b"x-carveout-user-country": "user_country",
    b"x-carveout-region": "deployment_region",
    b"x-carveout-purpose": "purpose",
    b"x-carveout-request-id": "request_id",
    b"x-carveout-gateway": "gateway_id",
    b"x-carveout-min-consistency": "min_consistency",
}
"""Headers carrying one value each, and the decision request's field each one fills."""
OPTIONAL = frozenset(
    {b"x-carveout-request-id", b"x-carveout-gateway", b"x-carveout-min-consistency"}
)
REQUIRED = tuple(header for header in FIELDS if header not in OPTIONAL)
HEADER_OF = {field: name.decode() for name, field in FIELDS.items()} | {
    "safeguards": SAFEGUARDS.decode(),
    "units": UNITS.decode(),
}
"""The header that carries each field, for errors to name."""

HEADER_MAX_BYTES = 16 * limits.KIB
"""The most one ``x-carveout-*`` header may hold (repeated safeguards lines together): room
for the longest list of safeguards the contract admits, 64 of 200 characters."""
MAX_LINES = 64
"""The most ``x-carveout-*`` header lines one request may carry."""
_UNITS_DIGITS = len(str(MAX_UNITS))


def carveout_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    """The request's ``x-carveout-*`` headers (and ``x-request-id``) by name (ASGI gives
    names in lower case), each with its values in the order sent. Nothing is judged yet:
    the token comes first."""
    found: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        if name.startswith(PREFIX) or name == PROXY_REQUEST_ID:
            found.setdefault(name, []).append(value)
    return found


@dataclass(frozen=True, slots=True)
class AuthzRequest:
    """An authorization request as read and checked: the access it asks about, and whether
    to record it."""

    question: Question
    record: bool


def _problem(status: int, header: bytes | str, message: str, kind: str) -> BadRequest:
    name = header.decode() if isinstance(header, bytes) else header
    return BadRequest(
        status, validation_error_body([{"loc": (name,), "msg": message, "type": kind}])
    )


def _text(header: bytes, value: bytes) -> str:
    if len(value) > HEADER_MAX_BYTES:
        raise _problem(
            422,
            header,
            f"{len(value)} bytes; an x-carveout-* header holds at most {HEADER_MAX_BYTES}",
            "too_long",
        )
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise _problem(400, header, "not UTF-8 text", "unicode_error") from None


def _one(found: dict[bytes, list[bytes]], header: bytes) -> str | None:
    values = found.get(header)
    if values is None:
        return None
    if len(values) > 1:
        raise _problem(400, header, f"sent {len(values)} times; it takes one value", "repeated")
    return _text(header, values[0])


def _safeguards(found: dict[bytes, list[bytes]]) -> list[str]:
    # A list header may come as several lines (RFC 9110 §5.3): they read as one, joined.
    joined = _text(SAFEGUARDS, b",".join(found.get(SAFEGUARDS, ())))
    return [item.strip() for item in joined.split(",") if item.strip()]


def _units(text: str | None) -> int:
    if text is None:
        return 0
    if not (text.isascii() and text.isdigit() and len(text) <= _UNITS_DIGITS) or (
        int(text) > MAX_UNITS
    ):
        raise _problem(
            422,
            UNITS,
            f"must be a whole number from 0 to {MAX_UNITS} (2^53-1), written in digits",
            "int_parsing",
        )
    return int(text)


def _record(text: str | None) -> bool:
    if text is None or text.lower() == "false":
        return False
    if text.lower() == "true":
        return True
    raise _problem(422, RECORD, "must be true or false", "bool_parsing")


def read_authz(
    found: dict[bytes, list[bytes]], caller: Caller, now: float, max_future_skew_s: float
) -> AuthzRequest:
    """Read the access an authorization request asks about, for ``caller`` (already
    authenticated) at ``now``; raises :class:`BadRequest` naming the header at fault, or
    :class:`~carveout_runtime.auth.AuthError` (403) when a named gateway token speaks for
    another gateway."""
    lines = sum(len(values) for values in found.values())
    if lines > MAX_LINES:
        raise _problem(
            400, "x-carveout-*", f"{lines} header lines; at most {MAX_LINES} are read", "too_many"
        )
    missing = [header for header in REQUIRED if header not in found]
    if missing:
        errors = [
            {"loc": (h.decode(),), "msg": "header required", "type": "missing"} for h in missing
        ]
        raise BadRequest(422, validation_error_body(errors))
    fields: dict[str, Any] = {}
    for header, field in FIELDS.items():
        text = _one(found, header)
        if text is not None:
            fields[field] = text
    fields["safeguards"] = _safeguards(found)
    fields["units"] = _units(_one(found, UNITS))
    record = _record(_one(found, RECORD))
    gateway_id = bound_gateway_id(caller, fields.get("gateway_id"))
    if gateway_id is None:
        raise _problem(
            422,
            "x-carveout-gateway",
            "header required with an unnamed gateway token (a named token's name is its "
            "gateway id)",
            "missing",
        )
    fields["gateway_id"] = gateway_id
    names = HEADER_OF
    if "request_id" not in fields:
        proxy_request_id = _one(found, PROXY_REQUEST_ID)
        if proxy_request_id is not None:
            fields["request_id"] = proxy_request_id
            names = {**HEADER_OF, "request_id": PROXY_REQUEST_ID.decode()}
        elif record:
            raise _problem(
                422,
                "x-carveout-request-id",
                "header required with x-carveout-record: true (or x-request-id), so that a "
                "retried request is recorded once",
                "missing",
            )
        else:
            fields["request_id"] = f"authz_{uuid.uuid4().hex}"
    question = read_fields(fields, now, max_future_skew_s, names)
    return AuthzRequest(question, record)
