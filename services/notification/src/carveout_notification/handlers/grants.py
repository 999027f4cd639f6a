"""Fold grant events into the contacts projection, and queue every notification they call for.

Each consumed event's effects (contacts, the contacts' own subscriptions, the
notifications due, with one id per event and subscription) and its processed mark
commit together; delivery happens after, from the persisted schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from carveout_contracts import GrantIssued, codec, topics
from carveout_contracts.common import iso_utc, utcnow
from carveout_runtime.inbound import Inbound
from carveout_runtime.retries import with_retries

from ..domain import (
    NOTIFIABLE_EVENT_TYPES,
    GrantContacts,
    affected_grants,
    apply,
    concerns,
    contact_subscription,
    notification_id,
    wants,
)
from ..store import NotificationRecord, NotificationStore


class Notifier:
    def __init__(
        self,
        store: NotificationStore,
        retry_attempts: int,
        on_queued: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.retry_attempts = retry_attempts
        self.on_queued = on_queued
        self.clock = clock

    async def __call__(self, event: Any, inbound: Inbound) -> None:
        now = self.clock()
        changed: list[GrantContacts] = []
        contacts: dict[str, GrantContacts] = {}
        new_subscriptions = []
        if event.TOPIC == topics.GRANTS:
            for grant_id in affected_grants(event):
                before = self.store.get_contacts(grant_id)
                after = apply(before, event, grant_id)
                if after is not None:
                    contacts[grant_id] = after
                    if after is not before:
                        changed.append(after)
                if isinstance(event, GrantIssued) and after is not None and before is None:
                    new_subscriptions += [contact_subscription(after, c) for c in after.contacts]
        elif getattr(event.data, "grant_id", None):
            known = self.store.get_contacts(event.data.grant_id)
            if known is not None:
                contacts[known.grant_id] = known
        notifications = []
        if event.type in NOTIFIABLE_EVENT_TYPES:
            grants, grantees = concerns(event, contacts)
            payload = codec.encode_value(event).decode()
            traceparent = inbound.cause_traceparent()
            # A subscriber hears of what the log received after it subscribed (a grant's
            # contacts, of everything about their grant): the same live and in a replay.
            appended_ms = inbound.appended_ms
            subscriptions = {
                s.subscription_id: s
                for s, created in self.store.subscriptions_created()
                if s.grant_id is not None
                or appended_ms is None
                or appended_ms >= created.timestamp() * 1000
            }
            subscriptions.update({s.subscription_id: s for s in new_subscriptions})
            for subscription in subscriptions.values():
                if wants(subscription, event, grants, grantees):
                    notifications.append(
                        NotificationRecord(
                            notification_id=notification_id(
                                str(event.event_id), subscription.subscription_id
                            ),
                            subscription_id=subscription.subscription_id,
                            event_id=str(event.event_id),
                            event_type=event.type,
                            channel=subscription.channel,
                            address=subscription.address,
                            payload=payload,
                            status="pending",
                            attempts=0,
                            next_attempt_at=iso_utc(now),
                            created_at=iso_utc(now),
                            traceparent=traceparent,
                        )
                    )
        await with_retries(
            lambda: self.store.record_event(
                event_id=str(event.event_id),
                topic=event.TOPIC,
                contacts=changed,
                new_subscriptions=new_subscriptions,
                notifications=notifications,
                at=now,
            ),
            attempts=self.retry_attempts,
            health=inbound.health,
            what=f"recording {event.type}",
        )
        if notifications and self.on_queued is not None:
            self.on_queued()
