"""The notification store's tables: grant contacts, subscriptions, notifications and their
delivery schedule, and the processed-event marks."""

from __future__ import annotations

from sqlalchemy import Index
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from carveout_runtime.service_store import ProcessedEventColumns


class NotificationTable(SQLModel, registry=registry()):
    """Base of this service's tables, with metadata of its own (no other store shares it)."""


class GrantContactsRecord(NotificationTable, table=True):
    """A grant's contacts (``document``: :class:`GrantContacts` as JSON), by grant."""

    __tablename__ = "grant_contacts"

    grant_id: str = Field(primary_key=True)
    grantee_id: str = Field(index=True)
    status: str
    version: int
    document: str


class SubscriptionRecord(NotificationTable, table=True):
    """A subscription (``document``: :class:`Subscription` as JSON, secrets included) and
    when it was made, which decides the first records it hears of."""

    __tablename__ = "subscriptions"

    subscription_id: str = Field(primary_key=True)
    grantee_id: str | None = Field(default=None, index=True)
    grant_id: str | None = Field(default=None, index=True)
    created_at: str
    document: str


class NotificationRecord(NotificationTable, table=True):
    """One notification of one event to one subscription, its delivery schedule, and the
    claim of the replica working on it."""

    __tablename__ = "notifications"
    __table_args__ = (
        # One row per (event, subscription), whatever the ids are made of: the row holds
        # the one outcome, so at most one accepted delivery per pair is the schema's rule.
        Index("notifications_event_subscription", "event_id", "subscription_id", unique=True),
    )

    notification_id: str = Field(primary_key=True)
    subscription_id: str = Field(index=True)
    event_id: str
    event_type: str
    channel: str
    address: str
    payload: str
    status: str = Field(index=True)
    attempts: int = 0
    next_attempt_at: str = Field(index=True)
    last_error: str | None = None
    created_at: str
    finished_at: str | None = None
    outcome_event: str | None = None
    """The ``notification.delivered`` or ``.failed`` event, stored with the outcome (outbox)."""
    announced_at: str | None = Field(default=None, index=True)
    """When ``outcome_event`` was published; ``None`` while it is still to be published."""
    traceparent: str | None = None
    """The W3C context its delivery continues: that of the event it tells of."""
    claimed_by: str | None = Field(default=None, index=True)
    """The replica attempting it, or publishing its outcome; ``None``: nobody (:mod:`.claims`)."""
    lease_until: str | None = None
    """When that replica's claim runs out unless it renews it."""


class ProcessedEvent(ProcessedEventColumns, NotificationTable, table=True):
    __tablename__ = "processed_events"
