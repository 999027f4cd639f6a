"""What the notification service's routes depend on, typed: its context, store and clock.

The composition root builds one :class:`NotificationContext` and gives it to the app;
routes take ``Store`` and ``Clock`` parameters and never read ``app.state``, and a test
can replace either through ``app.dependency_overrides``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends
from faststream.kafka import KafkaBroker

from carveout_contracts.common import utcnow
from carveout_runtime.composition import service_context
from carveout_runtime.consumers import EventHandler

from .settings import NotificationSettings
from .store import NotificationStore


@dataclass(frozen=True, slots=True)
class NotificationContext:
    """Everything the running service is made of, built once by ``create_app``."""

    settings: NotificationSettings
    store: NotificationStore
    broker: KafkaBroker
    consumers: Mapping[str, EventHandler]
    """The handler of each consumed topic, by topic (its counts and health)."""
    clock: Callable[[], datetime] = utcnow


Context = Annotated[NotificationContext, Depends(service_context(NotificationContext))]


def store(context: Context) -> NotificationStore:
    return context.store


def clock(context: Context) -> Callable[[], datetime]:
    """The clock a request's rules read (a subscription's start, a rotation's overlap): a
    clock rather than a time, read when the rule applies (after a webhook check, say)."""
    return context.clock


Store = Annotated[NotificationStore, Depends(store)]
Clock = Annotated[Callable[[], datetime], Depends(clock)]
