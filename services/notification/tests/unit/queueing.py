"""Queue a notification straight into the store, as the grant-event handler would."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from carveout_contracts import topics
from carveout_notification.domain import Subscription, notification_id
from carveout_notification.fanout import EventEffects, Notification
from carveout_notification.store import NotificationRecord, NotificationStore, queued_row


def queue_notification(
    store: NotificationStore,
    subscription: Subscription,
    at: datetime,
    event_type: str = "grant.issued",
) -> NotificationRecord:
    """One notification of a new ``event_type`` event to ``subscription``, due at ``at``;
    returns its row as queued (the caller's copy, apart from the store's session)."""
    event_id = str(uuid.uuid4())
    notification = Notification(
        notification_id=notification_id(event_id, subscription.subscription_id),
        subscription_id=subscription.subscription_id,
        event_id=event_id,
        event_type=event_type,
        channel=subscription.channel,
        address=subscription.address,
        payload=json.dumps({"type": event_type}),
        due_at=at,
    )
    store.record_event(
        EventEffects(contacts=[], new_subscriptions=[], notifications=[notification]),
        event_id=event_id,
        topic=topics.GRANTS,
        at=at,
    )
    return queued_row(notification)
