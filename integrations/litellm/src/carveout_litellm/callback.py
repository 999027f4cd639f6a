"""The LiteLLM proxy callback: ask Carveout before a call, record the call after it.

In the proxy's config::

    litellm_settings:
      callbacks: carveout_litellm.callback.proxy_handler

Before a call (``async_pre_call_hook``) it asks enforcement's decision API about the
access the call would be (:mod:`.attributes`) and refuses a denied call with 403 and the
violations; a call it cannot ask about is refused too (fail closed: 400 for attributes
that cannot be read, 503 when Carveout cannot be reached or cannot record). After a
successful call (``async_log_success_event``) it records the access, with the tokens
used as ``units``, through :mod:`.publisher`: the answer never waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from pydantic import ValidationError

from carveout_contracts import AccessRecorded, AccessRecordedData
from carveout_contracts.events.access import access_event_id

from .attributes import AttributeProblem, decision_request
from .publisher import AccessPublisher, Channel, HttpChannel, KafkaChannel
from .settings import CallbackSettings

log = logging.getLogger("carveout.litellm")

ACCESS_KEY = "carveout_access"
"""Where a call's metadata keeps the access that was allowed, for the record after it."""


def _refuse(status: int, reason: str, message: str, **more: Any) -> HTTPException:
    # LiteLLM answers {"error": {"message", ...}} with the detail's other fields under
    # provider_specific_fields: the message for people, the reason and the rest for code.
    return HTTPException(status, detail={"message": message, "reason": reason, **more})


def _units(response: Any, kwargs: Mapping[str, Any]) -> int:
    """The tokens a call used: the response's usage, else LiteLLM's standard log."""
    usage = getattr(response, "usage", None)
    total = getattr(usage, "total_tokens", None)
    if total is None:
        total = (kwargs.get("standard_logging_object") or {}).get("total_tokens")
    return total if isinstance(total, int) and total >= 0 else 0


class CarveoutCallback(CustomLogger):  # type: ignore[misc]  # LiteLLM's class is untyped
    """A LiteLLM ``CustomLogger`` that puts Carveout in front of the proxy's models."""

    def __init__(self, settings: CallbackSettings | None = None) -> None:
        super().__init__()
        self._settings = settings
        self._publisher: AccessPublisher | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def settings(self) -> CallbackSettings:
        # Read when first needed: the proxy imports this module before its environment
        # is complete, and a test imports it with none.
        if self._settings is None:
            self._settings = CallbackSettings()
        return self._settings

    @property
    def publisher(self) -> AccessPublisher:
        if self._publisher is None:
            settings = self.settings
            channels: list[Channel] = []
            if settings.kafka_bootstrap:
                channels.append(KafkaChannel(settings.kafka_bootstrap))
            channels.append(HttpChannel(settings.enforcement_url, settings.gateway_token or ""))
            self._publisher = AccessPublisher(settings.litellm_buffer, channels)
        return self._publisher

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            settings = self.settings
            self._client = httpx.AsyncClient(
                base_url=settings.enforcement_url.rstrip("/"),
                headers={"Authorization": f"Bearer {settings.gateway_token}"},
                timeout=settings.decision_timeout_seconds,
            )
        return self._client

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        """Ask Carveout about the call; refuse it (403 with the violations) if denied."""
        settings = self.settings
        if not settings.gateway_token:
            raise _refuse(503, "not_configured", "CARVEOUT_GATEWAY_TOKEN is not set")
        if not self.publisher.has_room():
            raise _refuse(
                503,
                "record_buffer_full",
                f"{settings.litellm_buffer} accesses are waiting to be recorded "
                "(CARVEOUT_LITELLM_BUFFER); retry",
            )
        request = data.get("proxy_server_request") or {}
        try:
            body = decision_request(
                request.get("headers") or {},
                getattr(user_api_key_dict, "metadata", None),
                model=data.get("model"),
                user=data.get("user") or getattr(user_api_key_dict, "user_id", None),
                call_id=data.get("litellm_call_id"),
                settings=settings,
            )
        except AttributeProblem as exc:
            raise _refuse(400, "invalid_request", str(exc)) from None
        answer = await self._ask(body)
        if answer.get("decision") != "allow":
            violations = answer.get("violations") or []
            found = ", ".join(f"{v.get('condition_id')} ({v.get('kind')})" for v in violations)
            raise _refuse(
                403,
                "denied",
                f"refused by Carveout: {found}",
                violations=violations,
                grant_id=answer.get("grant_id"),
                grant_version=answer.get("grant_version"),
            )
        data.setdefault("metadata", {})[ACCESS_KEY] = body
        return data

    async def _ask(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = await self._http().post("/v1/decisions", json=body)
        except httpx.HTTPError as exc:
            raise _refuse(
                503, "carveout_unavailable", f"Carveout could not be asked: {exc}"
            ) from None
        if answer.status_code == 200:
            decided: dict[str, Any] = answer.json()
            return decided
        try:
            said = answer.json().get("message", answer.text)
        except ValueError:
            said = answer.text
        if answer.status_code == 422:  # the access's attributes: the caller's to fix
            raise _refuse(
                400,
                "invalid_request",
                f"Carveout needs the access's attributes (x-carveout-* headers or the key's "
                f"metadata): {said}",
            )
        raise _refuse(
            503, "carveout_unavailable", f"Carveout answered {answer.status_code}: {said}"
        )

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Record the call as an access, its tokens as units, off the answer's path."""
        metadata = (kwargs.get("litellm_params") or {}).get("metadata") or {}
        asked = metadata.get(ACCESS_KEY)
        if not isinstance(asked, Mapping):
            return  # not a call this callback allowed (the pre-call hook did not run)
        occurred = start_time if isinstance(start_time, datetime) else datetime.now(UTC)
        if occurred.tzinfo is None:
            occurred = occurred.astimezone(UTC)  # LiteLLM's times are local and naive
        try:
            data = AccessRecordedData.model_validate(
                {**asked, "units": _units(response_obj, kwargs)}
            )
            event = AccessRecorded(
                event_id=access_event_id(data.gateway_id, data.request_id),
                occurred_at=occurred,
                producer=data.gateway_id,
                key=data.grantee_id,
                data=data,
            )
        except ValidationError as exc:
            log.error("call %s cannot be recorded: %s", asked.get("request_id"), exc)
            return
        self.publisher.offer(event)


proxy_handler = CarveoutCallback()
"""The instance LiteLLM's config names: ``carveout_litellm.callback.proxy_handler``."""
