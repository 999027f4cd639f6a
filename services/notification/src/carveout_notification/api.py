"""The notification service's HTTP API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, field_validator, model_validator

from carveout_contracts import Contact
from carveout_contracts.limits import MAX_ADDRESS, MAX_EVENT_TYPES, MAX_ID
from carveout_runtime.addresses import email_address_problem
from carveout_runtime.http import (
    ApiError,
    IdFilter,
    KnownQueryOnly,
    PageOffset,
    Reader,
    Regulator,
    check_webhook,
)

from .deps import Clock, Store
from .domain import (
    NOTIFIABLE_EVENT_TYPES,
    GrantContacts,
    Subscription,
    new_secret,
    rotate,
)

router = APIRouter(prefix="/v1", dependencies=[KnownQueryOnly])


@router.get("/grants/{grant_id}/contacts", response_model=GrantContacts)
async def grant_contacts(grant_id: str, store: Store, _: Reader) -> GrantContacts:
    """Who the notification service will tell about this grant."""
    contacts = store.get_contacts(grant_id)
    if contacts is None:
        raise ApiError(404, "not_found", f"notification knows no grant with id {grant_id!r}")
    return contacts


class SubscriptionRequest(BaseModel):
    """Who wants to hear of which events: a webhook URL or an email address."""

    channel: Literal["webhook", "email"]
    address: str = Field(min_length=3, max_length=MAX_ADDRESS)
    event_types: list[str] = Field(min_length=1, max_length=MAX_EVENT_TYPES)
    grantee_id: str | None = Field(None, min_length=1, max_length=MAX_ID)

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
        if self.channel == "email" and (problem := email_address_problem(self.address)):
            raise ValueError(problem)
        return self


class SubscriptionPublic(BaseModel):
    """A subscription as listings show it: never its signing secret."""

    subscription_id: str
    channel: str
    address: str
    event_types: list[str]
    grantee_id: str | None
    grant_id: str | None = None
    previous_secret_expires_at: datetime | None = None
    """After a rotation, until when the replaced secret still signs."""


class SubscriptionCreated(SubscriptionPublic):
    """The answer to a new subscription: for a webhook, its signing secret, shown this once."""

    secret: str | None = None


class SecretRotated(BaseModel):
    subscription_id: str
    secret: str
    """The new signing secret, shown this once."""
    previous_secret_expires_at: datetime
    """Until when the replaced secret signs too (both signatures are sent)."""


@router.post("/subscriptions", status_code=201, response_model=SubscriptionCreated)
async def subscribe(
    body: SubscriptionRequest, request: Request, store: Store, clock: Clock, _: Regulator
) -> SubscriptionCreated:
    """Subscribe a webhook or an email address to events (regulator).

    Webhooks are signed the Standard Webhooks way with the ``secret`` in the answer, shown
    only here: keep it (``rotate-secret`` makes a new one).
    """
    if body.channel == "webhook":
        await check_webhook(request, body.address)  # by the service's allowed networks
    subscription = Subscription(
        subscription_id="sub_" + uuid.uuid4().hex,
        channel=body.channel,
        address=body.address,
        event_types=body.event_types,
        grantee_id=body.grantee_id,
        secret=new_secret() if body.channel == "webhook" else None,
    )
    store.add_subscription(subscription, clock())
    return SubscriptionCreated.model_validate(subscription.model_dump())


@router.get("/subscriptions", response_model=list[SubscriptionPublic])
async def list_subscriptions(store: Store, _: Reader) -> list[SubscriptionPublic]:
    """Every subscription, grant contacts' included; signing secrets are never listed."""
    return [
        SubscriptionPublic.model_validate(s.model_dump(exclude={"secret", "previous_secret"}))
        for s in store.subscriptions()
    ]


@router.post("/subscriptions/{subscription_id}/rotate-secret", response_model=SecretRotated)
async def rotate_secret(
    subscription_id: str, store: Store, clock: Clock, _: Regulator
) -> SecretRotated:
    """A new signing secret for a webhook subscription, shown once (regulator).

    For 24 hours deliveries carry both signatures, so the receiver can switch without a
    gap; then only the new secret signs. A grant contact's webhook learns its secret this
    way: the regulator rotates it and hands the answer to the grantee.
    """
    subscription = store.get_subscription(subscription_id)
    if subscription is None:
        raise ApiError(404, "not_found", f"no subscription with id {subscription_id!r}")
    if subscription.channel != "webhook":
        raise ApiError(
            409, "conflict", f"subscription {subscription_id} is {subscription.channel}: unsigned"
        )
    rotated = rotate(subscription, new_secret(), clock())
    store.replace_subscription(rotated)
    assert rotated.secret is not None and rotated.previous_secret_expires_at is not None
    return SecretRotated(
        subscription_id=subscription_id,
        secret=rotated.secret,
        previous_secret_expires_at=rotated.previous_secret_expires_at,
    )


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
    store: Store,
    _: Reader,
    subscription_id: IdFilter = None,
    status: Literal["pending", "delivered", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: PageOffset = 0,
) -> NotificationPage:
    """Notifications, newest first, with their status and attempts."""
    rows, total = store.notifications(
        subscription_id=subscription_id, status=status, limit=limit, offset=offset
    )
    items: list[Any] = [NotificationPublic.model_validate(r.model_dump()) for r in rows]
    return NotificationPage(items=items, total=total)
