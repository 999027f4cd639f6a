"""The outcome events of deliveries: ``notification.delivered`` and ``notification.failed``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from carveout_contracts import Envelope, NotificationDelivered, NotificationFailed

from .domain import NAMESPACE
from .store import NotificationRecord


def outcome_event(
    n: NotificationRecord, outcome: str, attempts: int, at: datetime, error: str | None
) -> Envelope:
    """``notification.delivered`` or ``.failed``, with an id derived from the notification."""
    common: dict[str, Any] = {
        "notification_id": n.notification_id,
        "subscription_id": n.subscription_id,
        "source_event_id": n.event_id,
        "source_event_type": n.event_type,
        "channel": n.channel,
        "address": n.address,
        "attempts": attempts,
    }
    event_id = uuid.uuid5(NAMESPACE, f"{n.notification_id}/{outcome}")
    if outcome == "delivered":
        return NotificationDelivered.model_validate(
            {
                "event_id": event_id,
                "producer": "notification",
                "data": {**common, "delivered_at": at},
            }
        )
    return NotificationFailed.model_validate(
        {
            "event_id": event_id,
            "producer": "notification",
            "data": {**common, "failed_at": at, "error": error or "unknown"},
        }
    )
