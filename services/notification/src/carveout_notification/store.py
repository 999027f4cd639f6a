"""The notification store: grant contacts, subscriptions, the notifications queued and
their delivery schedule, and the processed-event marks."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import Engine, func, update
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col, select

from carveout_contracts.common import iso_utc as iso
from carveout_runtime.service_store import ProcessedEventColumns, ServiceStore

from .domain import GrantContacts, Subscription
from .fanout import EventEffects, Notification, Subscribed


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
    """One notification of one event to one subscription, and its delivery schedule."""

    __tablename__ = "notifications"

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


class ProcessedEvent(ProcessedEventColumns, NotificationTable, table=True):
    __tablename__ = "processed_events"


class NotificationStore(ServiceStore):
    tables = NotificationTable
    processed_events = ProcessedEvent

    def get_contacts(self, grant_id: str) -> GrantContacts | None:
        with Session(self.engine) as session:
            row = session.get(GrantContactsRecord, grant_id)
            return GrantContacts.model_validate_json(row.document) if row else None

    # ----------------------------------------------------------------- subscriptions

    def add_subscription(self, subscription: Subscription, at: datetime) -> bool:
        """Store a subscription unless it exists; says whether it was new."""
        with Session(self.engine) as session:
            if session.get(SubscriptionRecord, subscription.subscription_id) is not None:
                return False
            session.add(_subscription_row(subscription, at))
            session.commit()
            return True

    def get_subscription(self, subscription_id: str) -> Subscription | None:
        with Session(self.engine) as session:
            row = session.get(SubscriptionRecord, subscription_id)
            return Subscription.model_validate_json(row.document) if row else None

    def replace_subscription(self, subscription: Subscription) -> None:
        """Store a changed subscription (a rotated secret); its creation time stays."""
        with Session(self.engine) as session:
            row = session.get(SubscriptionRecord, subscription.subscription_id)
            if row is None:
                raise KeyError(subscription.subscription_id)
            row.document = subscription.model_dump_json()
            session.add(row)
            session.commit()

    def subscriptions_created(self) -> list[Subscribed]:
        """Every subscription, with when it was created."""
        with Session(self.engine) as session:
            rows = session.exec(select(SubscriptionRecord)).all()
        return [
            (Subscription.model_validate_json(r.document), datetime.fromisoformat(r.created_at))
            for r in rows
        ]

    def copy_subscriptions_from(self, source: Engine) -> int:
        """Carry subscriptions (configuration, secrets included) over from another store."""
        with Session(source) as reading:
            rows = reading.exec(select(SubscriptionRecord)).all()
            copies = [SubscriptionRecord.model_validate(r.model_dump()) for r in rows]
        with Session(self.engine) as session:
            for row in copies:
                if session.get(SubscriptionRecord, row.subscription_id) is None:
                    session.add(row)
            session.commit()
        return len(copies)

    def record_outcome(
        self, notification_id: str, *, status: str, attempts: int, at: datetime, event: str
    ) -> bool:
        """A final outcome read from the log (replay): says whether the notification exists."""
        with Session(self.engine) as session:
            row = session.get(NotificationRecord, notification_id)
            if row is None:
                return False
            row.status = status
            row.attempts = max(row.attempts, attempts)
            row.finished_at = iso(at)
            row.outcome_event = event
            row.announced_at = iso(at)
            session.add(row)
            session.commit()
            return True

    def subscriptions(self) -> list[Subscription]:
        with Session(self.engine) as session:
            rows = session.exec(select(SubscriptionRecord)).all()
        return [Subscription.model_validate_json(r.document) for r in rows]

    # ----------------------------------------------------------------- notifications

    def record_event(
        self, effects: EventEffects, *, event_id: str, topic: str, at: datetime
    ) -> None:
        """An event's effects (contacts, their subscriptions, notifications due) and its
        processed mark, in one transaction; a notification already queued stays as it is."""
        with Session(self.engine) as session:
            for view in effects.contacts:
                # The view fills the columns named after its fields, and is kept whole as JSON.
                row = GrantContactsRecord.model_validate(
                    view, update={"document": view.model_dump_json()}
                )
                session.merge(row)
            for subscription in effects.new_subscriptions:
                if session.get(SubscriptionRecord, subscription.subscription_id) is None:
                    session.add(_subscription_row(subscription, at))
            for notification in effects.notifications:
                if session.get(NotificationRecord, notification.notification_id) is None:
                    session.add(queued_row(notification))
            session.add(ProcessedEvent(event_id=event_id, topic=topic, processed_at=iso(at)))
            session.commit()

    def due(
        self, now: datetime, limit: int = 100, exclude: Collection[str] = ()
    ) -> list[NotificationRecord]:
        """Pending notifications due at ``now``, earliest first, but those in ``exclude``
        (attempts in flight)."""
        query = select(NotificationRecord).where(
            NotificationRecord.status == "pending",
            NotificationRecord.next_attempt_at <= iso(now),
        )
        if exclude:
            query = query.where(col(NotificationRecord.notification_id).not_in(list(exclude)))
        with Session(self.engine, expire_on_commit=False) as session:
            return list(
                session.exec(query.order_by(col(NotificationRecord.next_attempt_at)).limit(limit))
            )

    def next_due_at(self, exclude: Collection[str] = ()) -> datetime | None:
        query = select(func.min(NotificationRecord.next_attempt_at)).where(
            NotificationRecord.status == "pending"
        )
        if exclude:
            query = query.where(col(NotificationRecord.notification_id).not_in(list(exclude)))
        with Session(self.engine) as session:
            first = session.exec(query).one()
        return datetime.fromisoformat(first) if first else None

    def finish_attempt(
        self,
        notification_id: str,
        *,
        status: str,
        attempts: int,
        next_attempt_at: datetime | None,
        error: str | None,
        at: datetime,
        outcome_event: str | None = None,
    ) -> None:
        """The outcome of one attempt, and the next one's time when there is one.

        A final outcome comes with the event announcing it, written in the same
        transaction and published after (an outbox): a crash in between loses nothing.
        """
        with Session(self.engine) as session:
            row = session.get(NotificationRecord, notification_id)
            if row is None:
                return
            row.status = status
            row.attempts = attempts
            row.last_error = error
            if next_attempt_at is not None:
                row.next_attempt_at = iso(next_attempt_at)
            if status != "pending":
                row.finished_at = iso(at)
                row.outcome_event = outcome_event
            session.add(row)
            session.commit()

    def unannounced(self, limit: int = 500) -> list[tuple[str, str]]:
        """(notification id, outcome event JSON) of final outcomes not yet published."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(NotificationRecord.notification_id, NotificationRecord.outcome_event)
                .where(
                    col(NotificationRecord.outcome_event).is_not(None),
                    col(NotificationRecord.announced_at).is_(None),
                )
                .order_by(col(NotificationRecord.finished_at))
                .limit(limit)
            ).all()
        return [(nid, event) for nid, event in rows if event is not None]

    def traceparents(self, notification_ids: Sequence[str]) -> dict[str, str | None]:
        """Each notification's trace context (that of the event it tells of)."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(NotificationRecord.notification_id, NotificationRecord.traceparent).where(
                    col(NotificationRecord.notification_id).in_(notification_ids)
                )
            ).all()
        return dict(rows)

    def mark_announced(self, notification_ids: Sequence[str], at: datetime) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(NotificationRecord)
                .where(col(NotificationRecord.notification_id).in_(notification_ids))
                .values(announced_at=iso(at))
            )
            session.commit()

    def notifications(
        self,
        *,
        subscription_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[NotificationRecord], int]:
        query = select(NotificationRecord)
        if subscription_id:
            query = query.where(NotificationRecord.subscription_id == subscription_id)
        if status:
            query = query.where(NotificationRecord.status == status)
        with Session(self.engine) as session:
            total = session.exec(select(func.count()).select_from(query.subquery())).one()
            rows = session.exec(
                query.order_by(col(NotificationRecord.created_at).desc())
                .offset(offset)
                .limit(limit)
            ).all()
        return list(rows), int(total)


def queued_row(notification: Notification) -> NotificationRecord:
    """A notification as the store queues it: pending, never attempted, due at once."""
    due = iso(notification.due_at)
    schedule = {"status": "pending", "attempts": 0, "next_attempt_at": due, "created_at": due}
    return NotificationRecord.model_validate(notification, update=schedule)


def _subscription_row(subscription: Subscription, at: datetime) -> SubscriptionRecord:
    kept = {"created_at": iso(at), "document": subscription.model_dump_json()}
    return SubscriptionRecord.model_validate(subscription, update=kept)
