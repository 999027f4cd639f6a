"""Composition root of the notification service: settings, store, fan-out, deliveries, HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from carveout_contracts import Envelope, codec, topics
from carveout_contracts.common import utcnow
from carveout_runtime.brokers import kafka_broker
from carveout_runtime.composition import ServiceShell
from carveout_runtime.group_progress import GroupProgress
from carveout_runtime.stores import make_engine

from . import api
from .delivery import Deliverer
from .deps import NotificationContext
from .handlers import grants
from .settings import NotificationSettings
from .store import NotificationStore

SERVICE = "notification"


@dataclass(frozen=True, slots=True)
class ConsumedTopic:
    """How the service consumes one of its input topics."""

    description: str
    max_lag: int
    """How far behind the consumer may be and still be ready."""


CONSUMED = {
    topics.GRANTS: ConsumedTopic(
        "Grant events: who is to be told about each grant, and of what.", max_lag=0
    ),
    topics.BREACHES: ConsumedTopic(
        "Breaches, told to the grantee's contacts and to subscribers.", max_lag=100
    ),
}


def create_app(
    settings: NotificationSettings | None = None,
    broker: KafkaBroker | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    settings = settings or NotificationSettings()
    store = NotificationStore(make_engine(settings.database_url))
    shell = ServiceShell(
        SERVICE, settings, broker or kafka_broker(settings, "carveout-notification"), store.ping
    )

    async def publish(event: Envelope) -> None:
        await shell.publish(codec.encode_value(event), event.TOPIC, event.key.encode())

    deliverer = Deliverer(store, settings, publish, clock=clock)
    grants_stored = GroupProgress(settings.kafka_bootstrap, settings.group_id, topics.GRANTS)
    shell.resources.append(grants_stored)
    notifier = grants.Notifier(
        store,
        settings.store_retry_attempts,
        on_queued=deliverer.wake,
        clock=clock,
        grants_stored=grants_stored,
        grants_sync_s=settings.grants_sync_seconds,
    )
    consumers = {
        topic: shell.consume(
            topic, notifier, store.is_processed, described.description, max_lag=described.max_lag
        )
        for topic, described in CONSUMED.items()
    }

    async def deliveries_running() -> str:
        # The errors themselves are logged where they happen; readiness says only what.
        if deliverer.last_error is not None:
            return "delivery failing"
        if deliverer.announce_error is not None:
            return "outcomes not announced"
        return "ok"

    shell.background["deliveries"] = deliverer.run

    async def put_back_outcomes() -> int:
        # The outcomes are the store's: published again, with the same ids, by the rounds.
        count = await asyncio.to_thread(store.mark_all_unannounced)
        deliverer.wake()
        return count

    shell.restores[topics.NOTIFICATIONS] = put_back_outcomes
    shell.checks["deliveries"] = deliveries_running
    return shell.app(
        description="Tells every party concerned of grant changes and breaches, exactly once.",
        router=api.router,
        context=NotificationContext(settings, store, shell.broker, consumers, clock),
        produces=[topics.NOTIFICATIONS],
    )
