"""Every answer a route can give, documented in its OpenAPI operation.

FastAPI documents a route's success and a 422 of its own shape. Carveout's errors are
JSON of one shape (``{"error", "message"}``, plus ``errors`` by field for 422), and the
edge answers 401, 403 and 413 before a route runs; clients generated from the document,
and the API fuzzing in the tests, must see all of them. The statuses are derived from
each route (its role checks, whether it takes a body or path parameters), so a new route
is documented without anyone remembering to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel

from .edge import role_checks


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer: a short code, a message saying what was wrong, and for 422 the
    fields at fault."""

    error: str
    message: str
    errors: list[FieldError] | None = None


_WHY = {
    "401": "No valid bearer token (answered before the body is read).",
    "403": "The token's role may not do this.",
    "404": "No such resource.",
    "409": "The action conflicts with the resource's current state or version.",
    "413": "The request body is over its limit (answered before it is read).",
    "422": "The request is invalid: `errors` names each field and the rule it broke.",
    "503": "The store is unavailable; retry (see `Retry-After`).",
}

_REF = "#/components/schemas/{model}"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _error(status: str) -> dict[str, Any]:
    return {
        "description": _WHY[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def _statuses(method: str, path: str, roles: list[frozenset[Any]], declared: set[str]) -> set[str]:
    statuses = {"503"} if path.startswith("/v1/") else set()
    if roles:
        statuses |= {"401", "403"}
    if method in _BODY_METHODS:
        statuses |= {"413", "422"}
    if "{" in path:
        statuses |= {"404", "422"}
    if not path.startswith("/v1/"):
        return statuses  # operator routes (/readyz) document their own answers
    # Errors an API route declares itself (``responses={409: {}}``) get the one error shape.
    return statuses | (declared & _WHY.keys())


def document_errors(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document list each route's error answers and its roles."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorBody"] = ErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components.update(components["ErrorBody"].pop("$defs", {}))
        for route in iter_route_contexts(app.routes):
            methods: set[str] | None = getattr(route, "methods", None)
            path: str | None = getattr(route, "path", None)
            dependant = getattr(route, "dependant", None)
            if not methods or path is None or path not in schema.get("paths", {}):
                continue
            roles = list(role_checks(dependant)) if isinstance(dependant, Dependant) else []
            for method in methods:
                operation = schema["paths"][path].get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                for status in sorted(_statuses(method, path, roles, set(responses))):
                    if status != "422" and "content" in responses.get(status, {}):
                        continue  # the route documents a body of its own for this status
                    responses[status] = _error(status)  # 422 too: ours, not FastAPI's shape
                if roles:
                    admitted = sorted({role.value for check in roles for role in check})
                    operation["x-carveout-roles"] = admitted
                    note = f"Roles: {', '.join(admitted)}."
                    operation["description"] = (
                        f"{operation.get('description', '')}\n\n{note}".strip()
                    )
        schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
        schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
