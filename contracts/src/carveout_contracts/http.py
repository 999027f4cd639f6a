"""The HTTP conventions of every service: JSON errors that say what was wrong, bearer roles."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .auth import AuthError, Role, TokenBook

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
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_error_body(exc.errors()), status_code=422)

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        error = "unauthorized" if exc.status == 401 else "forbidden"
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            {"error": error, "message": exc.message}, status_code=exc.status, headers=headers
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
        return JSONResponse(
            {"error": "http_error", "message": str(exc.detail)}, status_code=exc.status_code
        )


def requires(*roles: Role) -> Callable[..., Awaitable[Role]]:
    """A dependency that admits only callers whose bearer token carries one of ``roles``."""

    async def check(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Role:
        book: TokenBook = request.app.state.tokens
        return book.authorize(authorization, roles)

    return check


Regulator = Annotated[Role, Depends(requires(Role.REGULATOR))]
Gateway = Annotated[Role, Depends(requires(Role.GATEWAY))]
Reader = Annotated[Role, Depends(requires(Role.REGULATOR, Role.AUDITOR, Role.GATEWAY))]
