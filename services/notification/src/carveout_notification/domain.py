"""Who is to be told about each grant: a pure projection of grant events."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from carveout_contracts import (
    CarveoutRevoked,
    Contact,
    GrantEvent,
    GrantIssued,
    GrantReinstated,
    GrantSuspended,
)
from carveout_contracts import affected_grants as affected_grants  # re-exported for the projection
from carveout_contracts.common import Frozen, UtcDatetime

Lifecycle = Literal["active", "suspended", "revoked"]


class GrantContacts(Frozen):
    grant_id: str
    carveout_id: str
    grantee_id: str
    grantee_name: str
    model_id: str
    status: Lifecycle
    version: int
    contacts: list[Contact]
    updated_at: UtcDatetime

    @classmethod
    def issued(cls, event: GrantIssued) -> GrantContacts:
        """A grant's contacts as its ``grant.issued`` names them: active, version 1."""
        d = event.data
        return cls(
            grant_id=d.grant_id,
            carveout_id=d.carveout_id,
            grantee_id=d.grantee.id,
            grantee_name=d.grantee.name,
            model_id=d.model_id,
            status="active",
            version=d.version,
            contacts=d.grantee.contacts,
            updated_at=event.occurred_at,
        )


def apply(view: GrantContacts | None, event: GrantEvent, grant_id: str) -> GrantContacts | None:
    """Fold one grant event into grant ``grant_id``'s contacts. Pure: no I/O, no clock."""
    if isinstance(event, GrantIssued):
        # Issued once: a repeat must never reset later versions.
        return view if view is not None else GrantContacts.issued(event)
    if view is None:
        return None
    if view.status == "revoked":
        return view  # revocation is final
    if isinstance(event, CarveoutRevoked):
        version = event.data.grant_versions.get(grant_id, view.version + 1)
        status: Lifecycle = "revoked"
    else:
        version = event.data.version
        status = (
            "suspended"
            if isinstance(event, GrantSuspended)
            else "active"
            if isinstance(event, GrantReinstated)
            else view.status
        )
    if version <= view.version:
        return view
    return view.model_copy(
        update={"version": version, "status": status, "updated_at": event.occurred_at}
    )


# --------------------------------------------------------------------------- subscriptions

CONTACT_EVENT_TYPES: tuple[str, ...] = (
    "grant.issued",
    "grant.suspended",
    "grant.reinstated",
    "carveout.revoked",
    "condition.breached",
)
"""What a grantee's contacts hear of their grants, without subscribing."""

NOTIFIABLE_EVENT_TYPES: tuple[str, ...] = (
    "grant.issued",
    "grant.amended",
    "grant.suspended",
    "grant.reinstated",
    "carveout.revoked",
    "condition.breached",
)

NAMESPACE = uuid.UUID("3b1d7c2e-8f4a-4e6b-9a0c-2d5e7f9a1b3c")


class Subscription(Frozen):
    """Who wants to hear of which events, over which channel."""

    subscription_id: str
    channel: Literal["webhook", "email"]
    address: str
    event_types: list[str]
    grantee_id: str | None = None
    grant_id: str | None = None
    """Set for a grant contact's own subscription: only that grant's events."""
    secret: str | None = None
    """Webhooks only: the Standard Webhooks signing secret (``whsec_`` + base64)."""
    previous_secret: str | None = None
    """The secret a rotation replaced; it still signs until ``previous_secret_expires_at``."""
    previous_secret_expires_at: UtcDatetime | None = None


SECRET_OVERLAP = timedelta(hours=24)
"""How long a replaced secret still signs, so a receiver can switch without a gap."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def rotate(
    subscription: Subscription, secret: str, now: datetime, overlap: timedelta = SECRET_OVERLAP
) -> Subscription:
    """The subscription signing with ``secret``, and with its current one until ``now + overlap``.

    A second rotation within the overlap drops the oldest secret: two sign at most.
    """
    if subscription.channel != "webhook" or subscription.secret is None:
        raise ValueError(f"subscription {subscription.subscription_id} has no signing secret")
    return subscription.model_copy(
        update={
            "secret": secret,
            "previous_secret": subscription.secret,
            "previous_secret_expires_at": now + overlap,
        }
    )


def signing_secrets(subscription: Subscription, now: datetime) -> list[str]:
    """The secrets that sign a delivery made at ``now``: the current one, and the one it
    replaced while that is still within its overlap."""
    secrets = [subscription.secret] if subscription.secret else []
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and now < expires:
        secrets.append(subscription.previous_secret)
    return secrets


def contact_subscription(
    grant: GrantContacts, contact: Contact, make_secret: Callable[[], str] = new_secret
) -> Subscription:
    """A grant contact's subscription to its grant; the id is derived, so it is made once."""
    sid = "sub_" + uuid.uuid5(NAMESPACE, f"{grant.grant_id}/{contact.kind}/{contact.address}").hex
    return Subscription(
        subscription_id=sid,
        channel=contact.kind,
        address=contact.address,
        event_types=list(CONTACT_EVENT_TYPES),
        grantee_id=grant.grantee_id,
        grant_id=grant.grant_id,
        secret=make_secret() if contact.kind == "webhook" else None,
    )


def notification_id(event_id: str, subscription_id: str) -> str:
    """One notification per (event, subscription), whatever happens: the id says so."""
    return "ntf_" + uuid.uuid5(NAMESPACE, f"{event_id}/{subscription_id}").hex


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` with one ``v1,`` signature per secret, space-separated, as
    Standard Webhooks allows: a receiver accepts the message if any one verifies."""
    return " ".join(sign(s, message_id, timestamp, body) for s in secrets)


def retry_delay(attempts: int, base_s: float, cap_s: float, jitter: float) -> float:
    """Exponential backoff with jitter: ``base * 2**(attempts-1)``, capped, times 0.5..1.5."""
    return float(min(cap_s, base_s * 2 ** max(0, attempts - 1)) * (0.5 + jitter))
