"""The HTTP edge of every service: who may call, and how much they may send, before the body.

FastAPI parses a request's body before it runs a route's dependencies, so a bearer check
in a dependency comes too late: a caller without a token would be told their body is
malformed (422), and an 8 MiB body would be read whole first. :class:`EdgeGuard` is a
plain ASGI middleware in front of the app that answers 401/403 from the matched route's
own role check (``requires(...).roles``, declared once in the route's signature) and 413
from the route's body limit, before the app sees the request.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

from .addresses import IPNetwork, Resolver, system_resolver
from .app_state import installed
from .auth import AuthError, Role, TokenBook
from .settings import SharedSettings

Scope = dict[str, Any]
Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """The most a request body may hold, and the setting that moves it."""

    max_bytes: int
    setting: str

    def refusal(self) -> bytes:
        return orjson.dumps(
            {
                "error": "payload_too_large",
                "message": f"request body is over the limit of {self.max_bytes} bytes "
                f"({self.setting})",
            }
        )


def auth_refusal(
    exc: AuthError, *, body_unread: bool = True
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The 401/403 answer, the same as the app's own (``install_error_handlers``).

    Refused before its body was read, the connection is closed: otherwise the server would
    go on receiving (and discarding) a body of any size from a caller it does not know.
    """
    error = "unauthorized" if exc.status == 401 else "forbidden"
    headers = [(b"www-authenticate", b"Bearer")] if exc.status == 401 else []
    if body_unread:
        headers += CLOSE
    return exc.status, orjson.dumps({"error": error, "message": exc.message}), headers


async def respond(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# A refused body is left unread: the connection cannot be reused for another request.
CLOSE = [(b"connection", b"close")]


async def refuse_too_large(send: Any, limit: BodyLimit) -> None:
    await respond(send, 413, limit.refusal(), CLOSE)


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The ``Content-Length`` a request declares, if any (the server holds it to it)."""
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


class BodyTooLarge(Exception):
    """Raised into the app's read of a body that went over its limit (already answered)."""


@dataclass(frozen=True, slots=True)
class _Rule:
    roles: tuple[frozenset[Role], ...]
    """Every role check of the route (all must pass); none: the route is open."""
    limit: BodyLimit


def role_checks(dependant: Dependant) -> Iterator[frozenset[Role]]:
    """The roles of every role check among a route's dependencies (each must pass)."""
    for dependency in dependant.dependencies:
        roles = getattr(dependency.call, "roles", None)
        if isinstance(roles, frozenset):
            yield roles
        yield from role_checks(dependency)


@dataclass(frozen=True, slots=True)
class _Table:
    """Routes to rules: static paths in a dict (O(1)), the few templated ones in order."""

    static: dict[tuple[str, str], _Rule]
    templated: tuple[tuple[re.Pattern[str], frozenset[str], _Rule], ...]
    default: _Rule

    @classmethod
    def of(
        cls, app: FastAPI, default: BodyLimit, limits: Mapping[tuple[str, str], BodyLimit]
    ) -> _Table:
        unused = set(limits)
        ordered: list[tuple[re.Pattern[str], frozenset[str], _Rule, str]] = []
        # Routes as the app matches them: included routers' routes with their prefixes and
        # router-level dependencies (FastAPI resolves included routers lazily).
        for route in iter_route_contexts(app.routes):
            regex: re.Pattern[str] | None = getattr(route, "path_regex", None)
            methods: set[str] | None = route.methods
            path: str | None = route.path
            if regex is None or methods is None or path is None:
                continue  # mounts and the like: open, the default body limit
            dependant = getattr(route, "dependant", None)
            roles = tuple(role_checks(dependant)) if isinstance(dependant, Dependant) else ()
            limit = default
            for method in methods:
                if (method, path) in limits:
                    limit = limits[method, path]
                    unused.discard((method, path))
            ordered.append((regex, frozenset(methods), _Rule(roles, limit), path))
        if unused:
            raise RuntimeError(f"body limits for routes the app does not have: {sorted(unused)}")
        static: dict[tuple[str, str], _Rule] = {}
        templated: list[tuple[re.Pattern[str], frozenset[str], _Rule]] = []
        for i, (pattern, verbs, rule, template) in enumerate(ordered):
            # A plain path goes in the dict unless an earlier route would match it first
            # (Starlette takes the first match), which the ordered scan then finds.
            shadowed = any(
                earlier.match(template) and verbs & earlier_verbs
                for earlier, earlier_verbs, _, _ in ordered[:i]
            )
            if "{" not in template and not shadowed:
                for verb in verbs:
                    static.setdefault((verb, template), rule)
            else:
                templated.append((pattern, verbs, rule))
        return cls(static, tuple(templated), _Rule((), default))

    def rule(self, method: str, path: str) -> _Rule:
        rule = self.static.get((method, path))
        if rule is not None:
            return rule
        for regex, methods, candidate in self.templated:
            if method in methods and regex.match(path):
                return candidate
        # No route (404/405 follow): nothing to guard but the body's size.
        return self.default


class EdgeGuard:
    """ASGI middleware: the route's bearer roles, then its body limit, before the app."""

    def __init__(
        self,
        app: Any,
        *,
        api: FastAPI,
        default: BodyLimit,
        limits: Mapping[tuple[str, str], BodyLimit] | None = None,
    ) -> None:
        self.app = app
        self.api = api
        self.default = default
        self.limits = dict(limits or {})
        self._table: _Table | None = None

    def _rule(self, method: str, path: str) -> _Rule:
        # Built on the first request, when every route of the app has been added.
        if self._table is None:
            self._table = _Table.of(self.api, self.default, self.limits)
        return self._table.rule(method, path)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self._rule(scope["method"], scope["path"])
        headers = scope["headers"]
        if rule.roles:
            authorization = None
            for name, value in headers:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
            book = edge_state(self.api).tokens
            try:
                for roles in rule.roles:
                    book.authenticate(authorization, roles)
            except AuthError as exc:
                await respond(send, *auth_refusal(exc))
                return
        limit = rule.limit
        length = declared_length(headers)
        if length is not None:
            if length > limit.max_bytes:
                await refuse_too_large(send, limit)
                return
            # The server delivers no more than the declared length: nothing to count.
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Any, send: Any, limit: BodyLimit) -> None:
        """A body of unknown length (chunked), counted as it arrives and cut at the limit."""
        seen = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal seen, refused
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit.max_bytes:
                    if not started:
                        refused = True
                        await refuse_too_large(send, limit)
                    raise BodyTooLarge(f"request body over {limit.max_bytes} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's answer to the cut body: the 413 is already out
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not refused:
                raise


@dataclass
class EdgeState:
    """What the edge and the runtime's HTTP checks read from an app: who may call
    (``tokens``), and where a webhook may point (``allow_networks``, checked with
    ``resolve``). Tests change its parts in place."""

    tokens: TokenBook
    allow_networks: tuple[IPNetwork, ...] = ()
    resolve: Resolver = system_resolver


def edge_state(app: Any) -> EdgeState:
    """The :class:`EdgeState` :func:`install_edge` gave ``app``."""
    return installed(app, "edge", EdgeState, "this app has no edge: install_edge(app, ...) first")


def install_edge(
    app: FastAPI,
    settings: SharedSettings,
    limits: Mapping[tuple[str, str], BodyLimit] | None = None,
    *,
    tokens: TokenBook | None = None,
    allow_networks: tuple[IPNetwork, ...] = (),
) -> EdgeState:
    """Guard every route of ``app``: roles first (``tokens``, by default the settings'
    token book), then body size, by default ``settings.http_body_max_bytes``; ``limits``
    gives a route (method, path template) its own. Install it before any middleware that
    serves routes itself."""
    state = EdgeState(tokens or settings.token_book(), allow_networks)
    app.state.edge = state
    default = BodyLimit(settings.http_body_max_bytes, "CARVEOUT_HTTP_BODY_MAX_BYTES")
    app.add_middleware(EdgeGuard, api=app, default=default, limits=limits)
    return state
