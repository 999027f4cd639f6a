"""``POST /v1/decisions`` answered lean: plain ASGI, msgspec in, orjson out.

The full framework stack costs more per request than judging does, so app.py installs
:class:`ServedFirst` to hand this one route to :class:`DecisionEndpoint` ahead of the
framework; the route declared in api.py documents it (OpenAPI). Like the edge guard the
framework's routes sit behind, it takes the token first, then the body's size (declared,
then counted), then the body.
"""

from __future__ import annotations

from typing import Any

import orjson

from carveout_runtime.auth import AuthError, Role, bound_gateway_id
from carveout_runtime.edge import (
    CLOSE,
    BodyLimit,
    auth_refusal,
    declared_length,
    edge_state,
    respond,
)

from ..clock import Clock, system_clock
from .decide import DecisionState, decide
from .wire import BadRequest, read_question

_GATEWAY = frozenset({Role.GATEWAY})

Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]
"""A status, a JSON body and extra headers."""


class DecisionEndpoint:
    """An ASGI app answering decision requests from :class:`DecisionState`."""

    def __init__(self, state: DecisionState, limit: BodyLimit, clock: Clock = system_clock) -> None:
        self.state = state
        self.limit = limit
        self.clock = clock

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await respond(send, *await self._answer(scope, receive))

    async def _answer(self, scope: Any, receive: Any) -> Answer:
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
        # The app's token book, read as the edge reads it, at each request.
        try:
            caller = edge_state(scope["app"]).tokens.authenticate(authorization, _GATEWAY)
        except AuthError as exc:
            return auth_refusal(exc)
        body = await self._body(scope, receive)
        if body is None:
            return 413, self.limit.refusal(), CLOSE
        now = self.clock()
        try:
            question = read_question(body, now, self.state.settings.max_future_skew_seconds)
            bound_gateway_id(caller, question.facts.gateway_id)
            answer = await decide(question, self.state, now)
        except BadRequest as bad:
            return bad.status, orjson.dumps(bad.body), []
        except AuthError as exc:
            return auth_refusal(exc, body_unread=False)
        return 200, orjson.dumps(answer), []

    async def _body(self, scope: Any, receive: Any) -> bytes | None:
        """The whole body, or ``None`` when it is over the limit (left unread past it)."""
        most = self.limit.max_bytes
        length = declared_length(scope["headers"])
        if length is not None and length > most:
            return None
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > most:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


class ServedFirst:
    """ASGI middleware: one route (method and path) answered by ``endpoint`` ahead of the
    framework; every other request goes on to ``app``."""

    def __init__(self, app: Any, *, method: str, path: str, endpoint: Any) -> None:
        self.app = app
        self.method = method
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == self.path
            and scope["method"] == self.method
        ):
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)
