"""The three services' APIs, called with the signed-in person's own token: the services
decide what each role may see and do, the console only shows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import httpx

from .sessions import ConsoleRole
from .settings import ConsoleSettings

ServiceName = Literal["grant", "enforcement", "notification"]


@dataclass(frozen=True)
class Answer:
    """A service's answer: its status and JSON body (``None`` when it sent none)."""

    service: ServiceName
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        message = self.body.get("message") if isinstance(self.body, dict) else None
        if isinstance(message, str):
            return message
        return f"{self.service} service answered {self.status}"

    def field_errors(self) -> dict[str, list[str]]:
        """A 422's errors by field (``grantee.id``, ``conditions.0.allow``, ...)."""
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        by_field: dict[str, list[str]] = {}
        for error in errors if isinstance(errors, list) else []:
            if isinstance(error, dict):
                name = str(error.get("field", "request"))
                by_field.setdefault(name, []).append(str(error.get("message", "invalid")))
        if not by_field and self.status == 422:
            by_field["request"] = [self.message]
        return by_field


class ServiceError(Exception):
    """A read the page cannot do without failed: shown as an error page with the
    service's own message (or 502 when the service does not answer)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.message)
        self.answer = answer

    @property
    def status(self) -> int:
        return self.answer.status if self.answer.status in (401, 403, 404, 409) else 502


class SignInRefused(Exception):
    """A token that may not sign in to the console, and why (shown on the sign-in page):
    401 for a token no service knows, 403 for one whose role may not sign in."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class Services:
    def __init__(
        self, settings: ConsoleSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._urls: dict[ServiceName, str] = {
            "grant": settings.grant_url,
            "enforcement": settings.enforcement_url,
            "notification": settings.notification_url,
        }
        # Redirects are never followed: an answer is the service's own, or an error.
        self._client = httpx.AsyncClient(
            timeout=settings.request_timeout_seconds, transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        service: ServiceName,
        method: str,
        path: str,
        token: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Answer:
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await self._client.request(
                method,
                self._urls[service] + path,
                params=query,
                json=json,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            message = f"the {service} service does not answer ({type(exc).__name__})"
            return Answer(service, 503, {"message": message})
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = {"message": response.text[:500]}
        return Answer(service, response.status_code, body)

    async def read(
        self, service: ServiceName, path: str, token: str, params: dict[str, Any] | None = None
    ) -> Any:
        """The JSON of ``GET path``, or :class:`ServiceError`."""
        answer = await self.call(service, "GET", path, token, params=params)
        if not answer.ok:
            raise ServiceError(answer)
        return answer.body

    async def role_of(self, token: str) -> ConsoleRole:
        """The role of ``token``, as the grant service judges it, or :class:`SignInRefused`.

        Reading grants needs a regulator or an auditor (a gateway gets 403); issuing one
        needs a regulator, and the service refuses any other role before it reads the
        body, so an empty body tells the two apart without issuing anything.
        """
        listing = await self.call("grant", "GET", "/v1/grants", token, params={"limit": 1})
        if listing.status == 401:
            raise SignInRefused("This token is not known to Carveout.")
        if listing.status == 403:
            raise SignInRefused(
                "Gateway tokens cannot sign in to the console: sign in with a regulator's "
                "or an auditor's token.",
                403,
            )
        if not listing.ok:
            raise SignInRefused(f"Cannot check the token now: {listing.message}", 503)
        probe = await self.call("grant", "POST", "/v1/grants", token, json={})
        if probe.status == 403:
            return ConsoleRole.AUDITOR
        if probe.status == 422:
            return ConsoleRole.REGULATOR
        raise SignInRefused(f"Cannot check the token now: {probe.message}", 503)
