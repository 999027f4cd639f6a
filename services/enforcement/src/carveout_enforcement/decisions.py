"""The decision API's hot path: ``POST /v1/decisions`` answered from memory, lean.

:class:`DecisionEndpoint` sits in front of FastAPI and serves that one route directly
(msgspec in, orjson out), because the full framework stack costs more per request than
judging does. The FastAPI route of the same name documents it (OpenAPI) and calls the
same :func:`decide`.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

import msgspec
import orjson
from pydantic import ValidationError

from carveout_contracts import limits
from carveout_contracts.common import MAX_UNITS
from carveout_contracts.consistency import BadConsistencyToken, decode_token, encode_token
from carveout_runtime.auth import AuthError, Role, bound_gateway_id
from carveout_runtime.edge import CLOSE, BodyLimit, auth_refusal, respond
from carveout_runtime.http import validation_error_body

from .access import Access, Safeguards, occurred_at_problem, plain_time
from .api import DecisionRequest
from .judge import judge

_Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_ID)]


class _WireDecision(msgspec.Struct):
    grantee_id: _Ident
    model_id: _Ident
    user_id: _Ident
    user_country: Annotated[str, msgspec.Meta(min_length=2, max_length=2)]
    deployment_region: _Ident
    purpose: _Ident
    gateway_id: _Ident
    request_id: _Ident = ""
    safeguards: Safeguards = msgspec.field(default_factory=list)
    units: Annotated[int, msgspec.Meta(ge=0, le=MAX_UNITS)] = 0
    grant_id: _Ident | None = None
    occurred_at: str | None = None
    min_consistency: str | None = None


_decoder = msgspec.json.Decoder(_WireDecision)


class BadRequest(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.status, self.body = status, body


class _Plain:
    """A request read on the fast path, with its time parsed as the contract parses it."""

    __slots__ = ("occurred_at", "wire")

    def __init__(self, wire: _WireDecision, occurred_at: datetime | None) -> None:
        self.wire = wire
        self.occurred_at = occurred_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wire, name)


def _read(body: bytes) -> Any:
    """The request, fast when plain; otherwise through the documented pydantic model."""
    try:
        wire = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):  # the documented model names the problem
        wire = None
    if wire is not None:
        texts = (wire.grantee_id, wire.model_id, wire.user_id, wire.deployment_region,
                 wire.purpose, wire.gateway_id, *wire.safeguards)  # fmt: skip
        country = wire.user_country
        occurred = None if wire.occurred_at is None else plain_time(wire.occurred_at)
        if (
            all(t == t.strip() for t in texts)
            and country.isascii()
            and country.isalpha()
            and wire.request_id == wire.request_id.strip()
            and (wire.grant_id is None or wire.grant_id == wire.grant_id.strip())
            and (wire.occurred_at is None or occurred is not None)
        ):
            return _Plain(wire, occurred)
    try:
        return DecisionRequest.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(422, validation_error_body(exc.errors())) from None


def occurred_at_error(problem: str, loc: tuple[Any, ...]) -> dict[str, Any]:
    """The 422 body for an ``occurred_at`` out of bounds, shaped like every other 422."""
    return validation_error_body([{"loc": loc, "msg": problem, "type": "out_of_range"}])


def _stale(expected: Any, actual: str) -> dict[str, Any]:
    return {
        "condition_id": "stale",
        "kind": "stale",
        "severity": "critical",
        "expected": expected,
        "actual": actual,
    }


def _answer(
    decision: str,
    violations: list[dict[str, Any]],
    *,
    required: bool,
    met: bool,
    waited_ms: float,
    grant_id: str | None = None,
    grant_version: int | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    return {
        "decision": decision,
        "violations": violations,
        "grant_id": grant_id,
        "grant_version": grant_version,
        "consistency_token": token,
        "consistency": {"required": required, "met": met, "waited_ms": waited_ms},
    }


async def decide(state: Any, request: Any) -> dict[str, Any]:
    """Judge a would-be access as of now (or its ``occurred_at``), recording nothing.

    Fails closed (``deny``, kind ``stale``) when enforcement cannot show it is caught up on
    the grants log, or has not applied the action named by ``min_consistency`` in time.
    """
    settings = state.settings
    index = state.index
    now = time.time()
    if request.occurred_at is not None:
        problem = occurred_at_problem(
            request.occurred_at.timestamp(), now, settings.max_future_skew_seconds
        )
        if problem is not None:
            raise BadRequest(422, occurred_at_error(problem, ("occurred_at",)))
    required = bool(request.min_consistency)
    waited = 0.0
    if required:
        try:
            versions = decode_token(request.min_consistency)
        except BadConsistencyToken as exc:
            raise BadRequest(
                422,
                {
                    "error": "invalid_request",
                    "message": f"min_consistency: {exc}",
                    "errors": [
                        {"field": "min_consistency", "message": str(exc), "type": "value_error"}
                    ],
                },
            ) from None
        met = index.has_applied(versions)
        if not met:
            started = time.perf_counter()
            met = await index.wait_for(versions, settings.consistency_wait_seconds)
            waited = round((time.perf_counter() - started) * 1000, 3)
            if not met:
                return _answer(
                    "deny",
                    [
                        _stale(
                            {"min_consistency": request.min_consistency},
                            f"not applied within {settings.consistency_wait_seconds}s",
                        )
                    ],
                    required=True,
                    met=False,
                    waited_ms=waited,
                )
    if not state.grants_log.fresh(settings.stale_after_seconds):
        return _answer(
            "deny",
            [
                _stale(
                    {"grants_log_within_s": settings.stale_after_seconds},
                    "cannot show the grants log is caught up",
                )
            ],
            required=required,
            met=required,  # a required token was met above; freshness is what failed
            waited_ms=waited,
        )
    occurred = request.occurred_at.timestamp() if request.occurred_at else now
    access = Access(
        event_id="",
        occurred_at=occurred,
        request_id=request.request_id,
        grantee_id=request.grantee_id,
        model_id=request.model_id,
        grant_id=request.grant_id,
        user_id=request.user_id,
        user_country=request.user_country.upper(),
        deployment_region=request.deployment_region,
        purpose=request.purpose,
        safeguards=frozenset(request.safeguards),
        units=request.units,
        gateway_id=request.gateway_id,
    )
    verdict = judge(access, index.candidates(access.grantee_id, access.model_id), state.usage)
    token = None
    if verdict.grant_id is not None:
        current = index.get(verdict.grant_id)
        token = encode_token({verdict.grant_id: current.version if current else 0})
    return _answer(
        verdict.decision,
        verdict.violations,
        required=required,
        met=True,
        waited_ms=waited,
        grant_id=verdict.grant_id,
        grant_version=verdict.grant_version,
        token=token,
    )


_GATEWAY = frozenset({Role.GATEWAY})


class DecisionEndpoint:
    """ASGI middleware serving ``POST /v1/decisions`` without the framework stack.

    Like :class:`~carveout_runtime.edge.EdgeGuard`, which it sits in front of: the token
    first, then the body's size (declared, then counted), then the body.
    """

    def __init__(self, app: Any, limit: BodyLimit) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not (
            scope["type"] == "http"
            and scope["path"] == "/v1/decisions"
            and scope["method"] == "POST"
        ):
            await self.app(scope, receive, send)
            return
        await respond(send, *await self._handle(scope, receive))

    async def _handle(self, scope: Any, receive: Any) -> tuple[int, bytes, list[Any]]:
        state = scope["app"].state if "app" in scope else self.app.state
        authorization = None
        length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                length = int(value)
        try:
            caller = state.tokens.authenticate(authorization, _GATEWAY)
        except AuthError as exc:
            return auth_refusal(exc)
        limit = self.limit
        if length is not None and length > limit.max_bytes:
            return 413, limit.refusal(), CLOSE
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit.max_bytes:
                return 413, limit.refusal(), CLOSE
            chunks.append(chunk)
            more = message.get("more_body", False)
        try:
            request = _read(b"".join(chunks))
            if caller.name is not None:
                bound_gateway_id(caller, request.gateway_id)
            answer = await decide(state, request)
        except BadRequest as bad:
            return bad.status, orjson.dumps(bad.body), []
        except AuthError as exc:
            return auth_refusal(exc, body_unread=False)
        return 200, orjson.dumps(answer), []
