"""The notification service's HTTP API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, field_validator, model_validator

from carveout_contracts import Contact
from carveout_contracts.http import ApiError, Reader, Regulator

from .domain import NOTIFIABLE_EVENT_TYPES, GrantContacts, Subscription, new_secret
from .store import NotificationStore

router = APIRouter(prefix="/v1")


@router.get("/grants/{grant_id}/contacts", response_model=GrantContacts)
async def grant_contacts(grant_id: str, request: Request, _: Reader) -> GrantContacts:
    """Who the notification service will tell about this grant."""
    store: NotificationStore = request.app.state.store
    contacts = store.get_contacts(grant_id)
    if contacts is None:
        raise ApiError(404, "not_found", f"notification knows no grant with id {grant_id!r}")
    return contacts


class SubscriptionRequest(BaseModel):
    """Who wants to hear of which events: a webhook URL or an email address."""

    channel: Literal["webhook", "email"]
    address: str
    event_types: list[str] = Field(min_length=1)
    grantee_id: str | None = None

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t != "*" and t not in NOTIFIABLE_EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event types {unknown}; choose from {list(NOTIFIABLE_EVENT_TYPES)} or '*'"
            )
        return value

    @model_validator(mode="after")
    def _address_fits_channel(self) -> SubscriptionRequest:
        Contact(kind=self.channel, address=self.address)
        return self


class SubscriptionPublic(BaseModel):
    subscription_id: str
    channel: str
    address: str
    event_types: list[str]
    grantee_id: str | None
    grant_id: str | None = None
    secret: str | None = None


@router.post("/subscriptions", status_code=201, response_model=SubscriptionPublic)
async def subscribe(
    body: SubscriptionRequest, request: Request, _: Regulator
) -> SubscriptionPublic:
    """Subscribe a webhook or an email address to events (regulator).

    Webhooks are signed the Standard Webhooks way with the ``secret`` in the answer.
    """
    subscription = Subscription(
        subscription_id="sub_" + uuid.uuid4().hex,
        channel=body.channel,
        address=body.address,
        event_types=body.event_types,
        grantee_id=body.grantee_id,
        secret=new_secret() if body.channel == "webhook" else None,
    )
    store: NotificationStore = request.app.state.store
    store.add_subscription(subscription, datetime.now(UTC))
    return SubscriptionPublic.model_validate(subscription.model_dump())


@router.get("/subscriptions", response_model=list[SubscriptionPublic])
async def list_subscriptions(request: Request, _: Regulator) -> list[SubscriptionPublic]:
    """Every subscription, grant contacts' included, with their signing secrets (regulator)."""
    store: NotificationStore = request.app.state.store
    return [SubscriptionPublic.model_validate(s.model_dump()) for s in store.subscriptions()]


class NotificationPublic(BaseModel):
    notification_id: str
    subscription_id: str
    event_id: str
    event_type: str
    channel: str
    address: str
    status: str
    attempts: int
    next_attempt_at: str
    last_error: str | None
    created_at: str
    finished_at: str | None


class NotificationPage(BaseModel):
    items: list[NotificationPublic]
    total: int


@router.get("/notifications", response_model=NotificationPage)
async def list_notifications(
    request: Request,
    _: Reader,
    subscription_id: str | None = None,
    status: Literal["pending", "delivered", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> NotificationPage:
    """Notifications, newest first, with their status and attempts."""
    store: NotificationStore = request.app.state.store
    rows, total = store.notifications(
        subscription_id=subscription_id, status=status, limit=limit, offset=offset
    )
    items: list[Any] = [NotificationPublic.model_validate(r.model_dump()) for r in rows]
    return NotificationPage(items=items, total=total)
