"""A decision request read from the wire, the one way: fast when plain, else by the
documented model, which names any problem; and the checks every request that says when an
access happened is held to.

The fast path is msgspec (typed, strict, in C) mirroring :class:`DecisionRequest`; a
request it does not read plainly (a missing field, padded text, an unusual time) goes
through the pydantic model, which accepts it normalised or answers 422 naming the field.
The authorization endpoint's headers, once parsed into fields, take the same two paths
(:func:`read_fields`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from pydantic import Field, ValidationError

from carveout_contracts import AccessRecordedData
from carveout_contracts.common import Identifier, UtcDatetime
from carveout_contracts.consistency import BadConsistencyToken, decode_token
from carveout_runtime.http import validation_error_body

from ..access import AccessFacts, Ident, facts_of, occurred_at_problem, plain_time, plainly_written


class DecisionRequest(AccessRecordedData):
    """An access a gateway is about to serve: the ``access.recorded`` data, and optionally
    when it happens and the consistency token of a regulator action it must reflect."""

    request_id: Identifier = Field(default_factory=lambda: f"req_{uuid.uuid4().hex[:16]}")
    occurred_at: UtcDatetime | None = None
    min_consistency: str | None = None


class _WireDecision(AccessFacts, kw_only=True):
    request_id: Ident = ""
    occurred_at: str | None = None
    min_consistency: str | None = None


_decoder = msgspec.json.Decoder(_WireDecision)


class BadRequest(Exception):
    """A request refused with ``status`` and its JSON ``body``."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.status, self.body = status, body


@dataclass(frozen=True, slots=True)
class Question:
    """A decision request as read and checked: what is asked, and what it must reflect."""

    facts: AccessFacts
    request_id: str
    occurred_at: float | None
    """When the access happens (epoch seconds); ``None``: now."""
    min_consistency: str | None
    """The consistency token as given, for the answer to name."""
    versions: dict[str, int] | None
    """The grant versions it names, which the answer must reflect; ``None``: no token."""


def occurred_at_error(
    occurred_at: datetime | None, now: float, max_future_skew_s: float, loc: tuple[Any, ...]
) -> dict[str, Any] | None:
    """The 422 error for an ``occurred_at`` out of bounds (DESIGN §10), at ``loc``, or
    ``None``: the check of every request that says when an access happened."""
    if occurred_at is None:
        return None
    problem = occurred_at_problem(occurred_at.timestamp(), now, max_future_skew_s)
    return None if problem is None else {"loc": loc, "msg": problem, "type": "out_of_range"}


def _refused(error: dict[str, Any]) -> BadRequest:
    return BadRequest(422, validation_error_body([error]))


def _plain(body: bytes) -> tuple[_WireDecision, datetime | None] | None:
    """The request read fast, with its time, or ``None`` for the documented model to read."""
    try:
        wire = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):  # the documented model names the problem
        return None
    occurred = None if wire.occurred_at is None else plain_time(wire.occurred_at)
    if (wire.occurred_at is None or occurred is not None) and plainly_written(
        wire, wire.request_id
    ):
        return wire, occurred
    return None


def read_question(body: bytes, now: float, max_future_skew_s: float) -> Question:
    """Read and check a decision request received at ``now``; raises :class:`BadRequest`."""
    plain = _plain(body)
    if plain is not None:
        wire, occurred = plain
        return _checked(
            wire, wire.request_id, occurred, wire.min_consistency, now, max_future_skew_s
        )
    try:
        request = DecisionRequest.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(422, validation_error_body(exc.errors())) from None
    return _checked_request(request, now, max_future_skew_s)


def read_fields(
    fields: dict[str, Any],
    now: float,
    max_future_skew_s: float,
    names: Mapping[str, str] | None = None,
) -> Question:
    """Read and check a decision request given as fields (already parsed, as the
    authorization endpoint reads its headers) rather than JSON: the same types, bounds and
    checks as :func:`read_question`. ``names`` renames fields in the errors (a field to the
    header that carried it); raises :class:`BadRequest`."""
    try:
        wire: _WireDecision | None = msgspec.convert(fields, _WireDecision)
    except msgspec.ValidationError:
        wire = None  # the documented model names the problem
    if wire is not None and plainly_written(wire, wire.request_id):
        token = wire.min_consistency
        return _checked(wire, wire.request_id, None, token, now, max_future_skew_s, names)
    try:
        request = DecisionRequest.model_validate(fields)
    except ValidationError as exc:
        errors = [{**e, "loc": _renamed(e["loc"], names)} for e in exc.errors()]
        raise BadRequest(422, validation_error_body(errors)) from None
    return _checked_request(request, now, max_future_skew_s, names)


def _renamed(loc: tuple[Any, ...], names: Mapping[str, str] | None) -> tuple[Any, ...]:
    if not names or not loc or loc[0] not in names:
        return loc
    return (names[loc[0]], *loc[1:])


def _checked_request(
    request: DecisionRequest,
    now: float,
    max_future_skew_s: float,
    names: Mapping[str, str] | None = None,
) -> Question:
    return _checked(
        facts_of(request),
        request.request_id,
        request.occurred_at,
        request.min_consistency,
        now,
        max_future_skew_s,
        names,
    )


def _checked(
    facts: AccessFacts,
    request_id: str,
    occurred: datetime | None,
    token: str | None,
    now: float,
    max_future_skew_s: float,
    names: Mapping[str, str] | None = None,
) -> Question:
    """The checks past the types and bounds: ``occurred_at`` in its window, a readable token."""
    error = occurred_at_error(occurred, now, max_future_skew_s, _renamed(("occurred_at",), names))
    if error is not None:
        raise _refused(error)
    versions = None
    if token:
        try:
            versions = decode_token(token)
        except BadConsistencyToken as exc:
            loc = _renamed(("min_consistency",), names)
            raise _refused({"loc": loc, "msg": str(exc), "type": "value_error"}) from None
    return Question(
        facts=facts,
        request_id=request_id,
        occurred_at=None if occurred is None else occurred.timestamp(),
        min_consistency=token,
        versions=versions,
    )
