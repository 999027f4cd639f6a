"""The notification store: grant contacts, subscriptions, the notifications queued and
their delivery schedule (:mod:`.schedule`), and the processed-event marks."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Engine, func, or_
from sqlmodel import Session, col, select

from carveout_contracts.common import iso_utc as iso
from carveout_runtime.service_store import ServiceStore

from .domain import GrantContacts, Subscription
from .fanout import EventEffects, Notification, Subscribed
from .schedule import DeliverySchedule
from .tables import (
    GrantContactsRecord,
    NotificationRecord,
    NotificationTable,
    ProcessedEvent,
    SubscriptionRecord,
)

__all__ = [
    "GrantContactsRecord",
    "NotificationRecord",
    "NotificationStore",
    "ProcessedEvent",
    "SubscriptionRecord",
    "queued_row",
]


class NotificationStore(DeliverySchedule, ServiceStore):
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

    def subscriptions_created(self, grant_ids: Collection[str] | None = None) -> list[Subscribed]:
        """Every subscription, with when it was created; given ``grant_ids``, only those that
        can want an event about them: the subscriptions of no one grant, and those grants'
        contacts' own (every grant adds its contacts' subscriptions: reading them all for
        each event would cost more with every grant issued)."""
        query = select(SubscriptionRecord)
        if grant_ids is not None:
            grant = col(SubscriptionRecord.grant_id)
            query = query.where(or_(grant.is_(None), grant.in_(list(grant_ids))))
        with Session(self.engine) as session:
            rows = session.exec(query).all()
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

    def subscriptions(self, subscription_ids: Collection[str] | None = None) -> list[Subscription]:
        """Every subscription, or those of ``subscription_ids``."""
        query = select(SubscriptionRecord)
        if subscription_ids is not None:
            query = query.where(col(SubscriptionRecord.subscription_id).in_(list(subscription_ids)))
        with Session(self.engine) as session:
            rows = session.exec(query).all()
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
