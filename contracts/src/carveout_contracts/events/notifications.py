"""``carveout.notifications``: what became of each notification. Produced by the
notification service; keyed by subscription id."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    Field,
    PositiveInt,
)

from .. import topics
from ..common import (
    Frozen,
    Identifier,
    UtcDatetime,
)
from .envelope import Envelope

__all__ = [
    "NotificationDelivered",
    "NotificationDeliveredData",
    "NotificationEvent",
    "NotificationFailed",
    "NotificationFailedData",
    "NotificationOutcomeData",
]


class NotificationOutcomeData(Frozen):
    notification_id: Identifier
    subscription_id: Identifier
    source_event_id: UUID
    source_event_type: str
    channel: Literal["webhook", "email"]
    address: str
    attempts: PositiveInt


class NotificationDeliveredData(NotificationOutcomeData):
    delivered_at: UtcDatetime


class NotificationFailedData(NotificationOutcomeData):
    failed_at: UtcDatetime
    error: str


class NotificationDelivered(
    Envelope, topic=topics.NOTIFICATIONS, key=lambda data: data.subscription_id
):
    """A notification reached its subscriber. Produced by the notification service."""

    type: Literal["notification.delivered"] = "notification.delivered"
    version: Literal[1] = 1
    data: NotificationDeliveredData


class NotificationFailed(
    Envelope, topic=topics.NOTIFICATIONS, key=lambda data: data.subscription_id
):
    """A notification could not be delivered after its last attempt.

    Produced by the notification service.
    """

    type: Literal["notification.failed"] = "notification.failed"
    version: Literal[1] = 1
    data: NotificationFailedData


NotificationEvent = Annotated[
    NotificationDelivered | NotificationFailed, Field(discriminator="type")
]
"""The events of ``carveout.notifications``."""
