"""``/v1/authz/``: the external-authorization endpoint of Envoy (``ext_authz``, HTTP
service) and nginx (``auth_request``), DESIGN §14.

Any method, any path below the prefix: Envoy appends the client's path to it, and nginx
sends its subrequest wherever the configuration says. The gateway authenticates with
``x-carveout-gateway-token`` (the client's own ``Authorization`` belongs to the client and
is never read); the access's attributes come from the ``x-carveout-*`` headers
(:mod:`.authz_request`); the answer is :func:`~.decide.decide`'s, from memory:

- 200 allows, with ``x-carveout-decision``, ``x-carveout-grant``,
  ``x-carveout-grant-version`` and ``x-carveout-consistency`` headers (and the answer of
  ``POST /v1/decisions`` as the body);
- 403 denies, with the same headers, the violations as JSON, and their condition ids in
  ``x-carveout-violations`` (nginx passes no body of a subrequest on, only headers);
- 401 for a missing or unknown gateway token, checked before anything else; 400/422 for an
  attribute a header cannot carry, naming the header and the limit (also in
  ``x-carveout-error``, for the same reason); 503 when the access was to be recorded and
  the buffer of records is full (:mod:`.recorder`).

Like ``POST /v1/decisions`` it is plain ASGI installed ahead of the framework
(:func:`serve_authz`); the route in :data:`documented` describes it in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header
from fastapi.security import APIKeyHeader

from carveout_contracts import limits, topics
from carveout_runtime.app_state import installed
from carveout_runtime.auth import AuthError, Caller, Role
from carveout_runtime.edge import CLOSE, declared_length, edge_state, respond
from carveout_runtime.openapi import ErrorBody

from ..clock import Clock, system_clock
from .authz_request import HEADER_MAX_BYTES, TOKEN, carveout_headers, read_authz
from .decide import DecisionAnswer, DecisionState, decide
from .recorder import AccessRecorder
from .wire import BadRequest

PREFIX = "/v1/authz"
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]

VIOLATIONS_HEADER_MAX = 1024
"""The most ``x-carveout-violations`` holds: proxies bound the headers of an answer (nginx
reads them into a 4 or 8 KiB buffer), and the body has the violations whole."""
ERROR_HEADER_MAX = 512


_ENCODED = frozenset('%"\\')


def _header_text(text: str, most: int) -> bytes:
    """``text`` as a header value: printable ASCII kept, anything else percent-encoded (an
    id may hold any character, and a header cannot), cut to ``most`` bytes. Quotes and
    backslashes are encoded too, so a proxy may put the value inside a JSON string."""
    out = []
    for char in text:
        if " " <= char <= "~" and char not in _ENCODED:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode())
    value = "".join(out)
    return (value if len(value) <= most else value[: most - 3] + "...").encode()


def _refusal(status: int, error: str, message: str) -> Answer:
    body = orjson.dumps({"error": error, "message": message})
    return status, body, [(b"x-carveout-error", _header_text(message, ERROR_HEADER_MAX))]


def _authenticate(book: Any, values: list[bytes] | None) -> Caller:
    if not values:
        raise AuthError(401, "missing gateway token: send 'x-carveout-gateway-token: <token>'")
    if len(values) > 1:
        raise AuthError(401, "x-carveout-gateway-token sent more than once")
    token = values[0].decode("latin-1").strip()
    caller: Caller | None = book.identify(token) if token else None
    if caller is None:
        raise AuthError(401, "unknown gateway token (x-carveout-gateway-token)")
    if caller.role is not Role.GATEWAY:
        raise AuthError(
            403, f"role '{caller.role.value}' may not ask for authorization; it needs gateway"
        )
    return caller


def _decision_headers(answer: DecisionAnswer, event_id: str | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-carveout-decision", answer.decision.encode())]
    if answer.grant_id is not None:
        headers.append((b"x-carveout-grant", _header_text(answer.grant_id, 1024)))
    if answer.grant_version is not None:
        headers.append((b"x-carveout-grant-version", str(answer.grant_version).encode()))
    if answer.consistency_token is not None:
        headers.append((b"x-carveout-consistency", answer.consistency_token.encode()))
    if answer.violations:
        ids = ",".join(str(v["condition_id"]) for v in answer.violations)
        headers.append((b"x-carveout-violations", _header_text(ids, VIOLATIONS_HEADER_MAX)))
    if event_id is not None:
        headers.append((b"x-carveout-event-id", event_id.encode()))
    return headers


def _denial(answer: DecisionAnswer) -> bytes:
    found = ", ".join(f"{v['condition_id']} ({v['kind']})" for v in answer.violations)
    return orjson.dumps(
        {
            "error": "denied",
            "message": f"access denied: {found}",
            "decision": answer.decision,
            "violations": answer.violations,
            "grant_id": answer.grant_id,
            "grant_version": answer.grant_version,
            "consistency_token": answer.consistency_token,
            "consistency": answer.consistency,
        }
    )


def _body_left_unread(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The body is never read: a large or streamed one closes the connection after the
    answer, so the server does not go on receiving it."""
    length = declared_length(headers)
    if length is not None and length <= limits.DEFAULT_DECISION_BODY_BYTES:
        return []
    if length is None and not any(name == b"transfer-encoding" for name, _ in headers):
        return []
    return CLOSE


class AuthzEndpoint:
    """An ASGI app answering authorization requests from :class:`DecisionState`."""

    def __init__(
        self, state: DecisionState, recorder: AccessRecorder, clock: Clock = system_clock
    ) -> None:
        self.state = state
        self.recorder = recorder
        self.clock = clock

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        status, body, headers = await self._answer(scope)
        await respond(send, status, body, headers + _body_left_unread(scope["headers"]))

    async def _answer(self, scope: Any) -> Answer:
        found = carveout_headers(scope["headers"])
        try:
            caller = _authenticate(edge_state(scope["app"]).tokens, found.get(TOKEN))
        except AuthError as exc:
            return _refusal(
                exc.status, "unauthorized" if exc.status == 401 else "forbidden", exc.message
            )
        now = self.clock()
        try:
            request = read_authz(found, caller, now, self.state.settings.max_future_skew_seconds)
        except BadRequest as bad:
            headers = [(b"x-carveout-error", _header_text(bad.body["message"], ERROR_HEADER_MAX))]
            return bad.status, orjson.dumps(bad.body), headers
        except AuthError as exc:  # a named gateway token speaking for another gateway
            return _refusal(exc.status, "forbidden", exc.message)
        if request.record and not self.recorder.has_room():
            status, body, headers = _refusal(
                503,
                "record_buffer_full",
                f"cannot record the access: {self.recorder.capacity} records are waiting for "
                "the broker (CARVEOUT_ENFORCEMENT_AUTHZ_RECORD_BUFFER); retry",
            )
            return status, body, [*headers, (b"retry-after", b"1")]
        answer = await decide(request.question, self.state, now)
        event_id = None
        if request.record:
            event_id = str(self.recorder.record(request.question, now))
        headers = _decision_headers(answer, event_id)
        if answer.decision == "allow":
            return 200, orjson.dumps(answer), headers
        return 403, _denial(answer), headers


class ServedUnder:
    """ASGI middleware: every request under ``prefix`` (any method) is answered by
    ``endpoint`` ahead of the framework; every other request goes on to ``app``."""

    def __init__(self, app: Any, *, prefix: str, endpoint: Any) -> None:
        self.app = app
        self.exact = prefix
        self.below = prefix + "/"
        self.endpoint = endpoint

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(self.below) or path == self.exact:
                await self.endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def authz_of(app: FastAPI) -> AuthzEndpoint:
    """The :class:`AuthzEndpoint` :func:`serve_authz` gave ``app``."""
    missing = "this app has no authorization endpoint: serve_authz(app, ...) first"
    return installed(app, "authz", AuthzEndpoint, missing)


def serve_authz(
    app: FastAPI,
    state: DecisionState,
    broker: Any,
    background: dict[str, Any],
    clock: Clock = system_clock,
) -> AuthzEndpoint:
    """Answer ``/v1/authz/`` on ``app`` ahead of the framework, document it, and run the
    task (in ``background``) that publishes the accesses it records on ``broker``."""

    async def publish(value: bytes, key: bytes, headers: dict[str, str]) -> Any:
        return await broker.publish(value, topics.ACCESS, key=key, headers=headers, no_confirm=True)

    recorder = AccessRecorder(publish, state.settings.authz_record_buffer)
    endpoint = AuthzEndpoint(state, recorder, clock)
    app.state.authz = endpoint
    background["authz-recorder"] = recorder.run_forever
    app.include_router(documented)
    app.add_middleware(ServedUnder, prefix=PREFIX, endpoint=endpoint)
    return endpoint


# --------------------------------------------------------------------------- the document


class AuthzRefusal(ErrorBody):
    """A refusal: 403 for a denied access (the decision and its violations) or a token of
    another role; ``error`` and ``message`` say which."""

    decision: str | None = None
    violations: list[dict[str, Any]] | None = None
    grant_id: str | None = None
    grant_version: int | None = None
    consistency_token: str | None = None
    consistency: dict[str, Any] | None = None


gateway_token = APIKeyHeader(
    name="x-carveout-gateway-token",
    scheme_name="gatewayToken",
    auto_error=False,
    description="A gateway token, as a header of its own: the client's Authorization is "
    "the client's, and is never read.",
)


def _id_header(alias: str, description: str) -> Any:
    return Header(
        alias=alias,
        min_length=1,
        max_length=limits.MAX_ID,
        description=description,
    )


documented = APIRouter(tags=["gateways"])


@documented.get(
    PREFIX + "/{path:path}",
    response_model=DecisionAnswer,
    responses={
        400: {"model": ErrorBody, "description": "A header given twice, or not UTF-8."},
        401: {"model": ErrorBody, "description": "No valid x-carveout-gateway-token."},
        403: {"model": AuthzRefusal, "description": "Denied: the violations, as JSON."},
        503: {"model": ErrorBody, "description": "The access cannot be recorded now; retry."},
    },
)
async def authorize(
    path: str,
    grantee: Annotated[str, _id_header("x-carveout-grantee", "The grantee's id.")],
    model: Annotated[str, _id_header("x-carveout-model", "The model's id.")],
    user: Annotated[str, _id_header("x-carveout-user", "The user's id.")],
    user_country: Annotated[
        str,
        Header(
            alias="x-carveout-user-country",
            pattern="^[A-Za-z]{2}$",
            description="ISO 3166 alpha-2.",
        ),
    ],
    region: Annotated[str, _id_header("x-carveout-region", "The deployment region.")],
    purpose: Annotated[str, _id_header("x-carveout-purpose", "The purpose of the access.")],
    _token: Annotated[str | None, Depends(gateway_token)],
    safeguards: Annotated[
        str | None,
        Header(
            alias="x-carveout-safeguards",
            max_length=HEADER_MAX_BYTES,
            description="Safeguards attested, comma-separated (at most 64, of 200 characters).",
        ),
    ] = None,
    units: Annotated[
        str | None,
        Header(
            alias="x-carveout-units",
            pattern="^[0-9]{1,16}$",
            description="Units of usage: a whole number from 0 to 2^53-1 (default 0).",
        ),
    ] = None,
    request_id: Annotated[
        str | None,
        _id_header(
            "x-carveout-request-id",
            "The gateway's request id (else the x-request-id Envoy gives every request).",
        ),
    ] = None,
    gateway: Annotated[
        str | None,
        _id_header(
            "x-carveout-gateway",
            "The gateway's id; a named gateway token's name is its id (required otherwise).",
        ),
    ] = None,
    min_consistency: Annotated[
        str | None,
        Header(
            alias="x-carveout-min-consistency",
            description="A consistency token the answer must reflect (DESIGN §5).",
        ),
    ] = None,
    record: Annotated[
        str | None,
        Header(
            alias="x-carveout-record",
            pattern="^(?i:true|false)$",
            description="true: also publish the access as access.recorded, its event_id "
            "derived from the gateway and request ids (x-carveout-event-id).",
        ),
    ] = None,
) -> DecisionAnswer:
    """Allow (200) or deny (403) the request a gateway is about to serve: Envoy's
    ext_authz (HTTP service) and nginx's auth_request. Any method and any path below
    /v1/authz/ (Envoy appends the client's path); GET is documented for all of them.

    The answer's headers: x-carveout-decision, x-carveout-grant, x-carveout-grant-version,
    x-carveout-consistency, x-carveout-violations (condition ids), x-carveout-event-id
    (when recorded), x-carveout-error (on 4xx)."""
    # Declared for the API's document. Requests are answered by AuthzEndpoint, which
    # serve_authz installs ahead of the framework: this is never reached.
    raise RuntimeError("/v1/authz/ is answered by the AuthzEndpoint serve_authz installs")
