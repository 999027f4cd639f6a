"""The HTTP conventions of every service: JSON errors that say what was wrong, bearer roles."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol, TypeVar, cast, get_origin

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator
from starlette.exceptions import HTTPException

from carveout_contracts import limits
from carveout_contracts.common import UtcDatetime

from .addresses import AddressRefused, refuse_unsafe_webhook
from .auth import AuthError, Caller, Role, TokenBook
from .edge import auth_refusal, edge_state

log = logging.getLogger("carveout.http")


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "request"


def validation_error_body(raw_errors: Any) -> dict[str, Any]:
    """The 422 body: which fields were wrong and why, in one readable message too."""
    errors = [
        {
            "field": "body" if e["type"] == "json_invalid" else _field(e["loc"]),
            "message": "not valid JSON" if e["type"] == "json_invalid" else e["msg"],
            "type": e["type"],
        }
        for e in raw_errors
    ]
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return {"error": "invalid_request", "message": message, "errors": errors}


def _is_store_error(exc: Exception) -> bool:
    try:
        from sqlalchemy.exc import DBAPIError, OperationalError
    except ImportError:  # pragma: no cover - every service has SQLAlchemy
        return False
    return isinstance(exc, OperationalError | DBAPIError)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as JSON of one shape, and document those answers (OpenAPI)."""
    from .openapi import document_errors

    document_errors(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_error_body(exc.errors()), status_code=422)

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> Response:
        # The same answer as the edge gives before the body (one shape, built once).
        status, body, headers = auth_refusal(exc, body_unread=False)
        return Response(
            body,
            status_code=status,
            media_type="application/json",
            headers={name.decode(): value.decode() for name, value in headers},
        )

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        if _is_store_error(exc):
            log.error("store unavailable: %s", exc)
            return JSONResponse(
                {"error": "store_unavailable", "message": "the store is unavailable; retry"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        log.exception("unexpected error")
        return JSONResponse(
            {"error": "internal", "message": f"unexpected {type(exc).__name__}; see the logs"},
            status_code=500,
        )

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body FastAPI could not even decode (not UTF-8, say)
            return JSONResponse(
                validation_error_body([{"type": "json_invalid", "loc": ("body",), "msg": ""}]),
                status_code=422,
            )
        return JSONResponse(
            {"error": "http_error", "message": str(exc.detail)}, status_code=exc.status_code
        )


bearer = HTTPBearer(
    auto_error=False,  # a missing or wrong token is our JSON 401, not FastAPI's
    scheme_name="bearer",
    description="A Carveout API token (tokens.json, or CARVEOUT_REGULATOR_TOKEN, "
    "CARVEOUT_GATEWAY_TOKEN, CARVEOUT_AUDITOR_TOKEN). Each route says which roles it admits.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class RoleCheck(Protocol[T_co]):
    """A route's bearer check; ``roles`` is what :class:`~carveout_runtime.edge.EdgeGuard`
    reads to refuse a caller before the body is read, so the roles are declared once."""

    roles: frozenset[Role]

    def __call__(self, request: Request, credentials: Credentials) -> Awaitable[T_co]: ...


def _role_check(
    roles: tuple[Role, ...], answer: Callable[[TokenBook, str | None, frozenset[Role]], T]
) -> RoleCheck[T]:
    allowed = frozenset(roles)

    async def check(request: Request, credentials: Credentials) -> T:
        # The header itself, not ``credentials``: a malformed one is told apart from none.
        tokens = edge_state(request.app).tokens
        return answer(tokens, request.headers.get("authorization"), allowed)

    checker = cast(RoleCheck[T], check)
    checker.roles = allowed
    return checker


def identifies(*roles: Role) -> RoleCheck[Caller]:
    """A dependency that admits only callers whose bearer token carries one of ``roles``,
    and says who they are (a named token's name)."""
    return _role_check(roles, TokenBook.authenticate)


def requires(*roles: Role) -> RoleCheck[Role]:
    """A dependency that admits only callers whose bearer token carries one of ``roles``."""
    return _role_check(roles, TokenBook.authorize)


# Least privilege (DESIGN §10): a gateway publishes accesses, asks decisions and reads grants
# as enforcement sees them; everything else is for regulators (mutations) and auditors.
Regulator = Annotated[Role, Depends(requires(Role.REGULATOR))]
Gateway = Annotated[Caller, Depends(identifies(Role.GATEWAY))]
Reader = Annotated[Role, Depends(requires(Role.REGULATOR, Role.AUDITOR))]
GrantViewer = Annotated[Role, Depends(requires(Role.REGULATOR, Role.AUDITOR, Role.GATEWAY))]
"""Enforcement's view of a grant, which a gateway may read to see what it is judged against."""
AnyRole = GrantViewer
"""Any caller with a token: what every party may read (the services' public keys)."""


IdFilter = Annotated[str | None, Query(max_length=limits.MAX_ID)]
"""A listing's filter by an id: no id is longer than the contract allows."""
PageOffset = Annotated[int, Query(ge=0, le=limits.MAX_PAGE_OFFSET)]
"""How many rows a listing skips."""

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", re.IGNORECASE)


def _rfc3339_only(value: Any) -> Any:
    # pydantic would also take "0.0" or "1e9" as seconds since the epoch: a listing filtered
    # by a number is a mistake to refuse, not a time to guess.
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 time with its offset, e.g. 2026-06-28T14:00:00Z")
    return value


QueryTime = Annotated[UtcDatetime | None, BeforeValidator(_rfc3339_only), Query()]
"""A listing's time bound: an RFC 3339 time with its offset."""


async def known_query_only(request: Request) -> None:
    """Refuse a query parameter the route does not take (422 naming it), so that a
    mistyped filter (``?grantee=`` for ``?grantee_id=``) is not silently a listing of all;
    and one that takes a single value given several times (which one would count?)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    params = {param.alias: param for param in _query_params(dependant)}
    known = set(params)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": f"unknown query parameter; this route takes {sorted(known) or 'none'}",
                }
                for name in unknown[:10]
            ]
        )
    repeated = [
        name
        for name in sorted(known & set(request.query_params))
        if len(request.query_params.getlist(name)) > 1 and not _takes_many(params[name])
    ]
    if repeated:
        raise RequestValidationError(
            [
                {
                    "type": "repeated",
                    "loc": ("query", name),
                    "msg": f"given {len(request.query_params.getlist(name))} times; it takes one",
                }
                for name in repeated
            ]
        )


def _takes_many(param: Any) -> bool:
    annotation = getattr(getattr(param, "field_info", None), "annotation", None)
    return get_origin(annotation) in {list, tuple, set, frozenset}


def _query_params(dependant: Any) -> list[Any]:
    params = list(dependant.query_params)
    for dependency in dependant.dependencies:
        params += _query_params(dependency)
    return params


KnownQueryOnly = Depends(known_query_only)
"""A router dependency: every route of the router refuses unknown query parameters."""


async def check_webhook(request: Request, address: str, field: str | None = None) -> None:
    """422 unless ``address`` is a webhook Carveout may call (DESIGN §10, no SSRF), by the
    service's ``allow_networks``; ``field`` names it in the error when given.

    Resolving blocks, so it runs in a thread; a host that does not resolve yet is accepted,
    since every delivery resolves and checks again before it connects.
    """
    state = edge_state(request.app)
    try:
        await refuse_unsafe_webhook(address, state.allow_networks, state.resolve)
    except AddressRefused as exc:
        message = str(exc) if field is None else f"{field}: {exc}"
        raise ApiError(422, "address_refused", message) from None
