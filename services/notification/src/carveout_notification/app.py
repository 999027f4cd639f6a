"""Composition root of the notification service: settings, store, consumers, deliverer, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from carveout_contracts import Envelope, codec, topics
from carveout_contracts.common import utcnow
from carveout_runtime import telemetry
from carveout_runtime.brokers import kafka_broker, start_broker
from carveout_runtime.consumers import consume, dead_letter_publisher
from carveout_runtime.docs import install_asyncapi
from carveout_runtime.edge import install_edge
from carveout_runtime.http import install_error_handlers
from carveout_runtime.ops import broker_check, caught_up_check, install_ops_routes, store_check
from carveout_runtime.stores import make_engine

from . import api
from .delivery import Deliverer
from .deps import NotificationContext, install_context
from .handlers import grants
from .settings import NotificationSettings
from .store import NotificationStore

SERVICE = "notification"
log = logging.getLogger("carveout.notification")


@dataclass(frozen=True, slots=True)
class ConsumedTopic:
    """How the service consumes one of its input topics."""

    check: str
    """Its name among the readiness checks."""
    description: str
    max_lag: int
    """How far behind the consumer may be and still be ready."""


CONSUMED = {
    topics.GRANTS: ConsumedTopic(
        "grants", "Grant events: who is to be told about each grant, and of what.", max_lag=0
    ),
    topics.BREACHES: ConsumedTopic(
        "breaches", "Breaches, told to the grantee's contacts and to subscribers.", max_lag=100
    ),
}


def create_app(
    settings: NotificationSettings | None = None,
    broker: KafkaBroker | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    settings = settings or NotificationSettings()
    telemetry.configure_tracing(SERVICE, settings)
    tokens = settings.token_book()
    store = NotificationStore(make_engine(settings.database_url))
    broker = broker or kafka_broker(settings, "carveout-notification")

    async def publish(event: Envelope) -> None:
        await broker.publish(
            codec.encode_value(event),
            event.TOPIC,
            key=event.key.encode(),
            headers=telemetry.kafka_headers(),
        )

    deliverer = Deliverer(store, settings, publish, clock=clock)
    dead_letter = dead_letter_publisher(broker, SERVICE)
    notifier = grants.Notifier(
        store, settings.store_retry_attempts, on_queued=deliverer.wake, clock=clock
    )
    consumed = {
        topic: consume(
            broker,
            topic,
            process=notifier,
            is_processed=store.is_processed,
            dead_letter=dead_letter,
            group_id=settings.group_id,
            settings=settings,
            description=described.description,
            service=SERVICE,
        )
        for topic, described in CONSUMED.items()
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start_broker(broker, settings.kafka_bootstrap)
        delivering = asyncio.create_task(deliverer.run(), name="deliveries")
        try:
            yield
        finally:
            delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivering
            await broker.stop()
            telemetry.flush_tracing()

    app = FastAPI(
        title="Carveout notification service",
        description="Tells every party concerned of grant changes and breaches, exactly once.",
        version="1",
        lifespan=lifespan,
    )
    install_context(
        app,
        NotificationContext(
            settings=settings,
            tokens=tokens,
            store=store,
            broker=broker,
            consumers={topic: handler for topic, (handler, _) in consumed.items()},
            clock=clock,
        ),
    )
    install_error_handlers(app)
    install_edge(app, settings)
    install_asyncapi(app, broker, produces=[topics.NOTIFICATIONS, topics.DEADLETTER])
    app.include_router(api.router)
    telemetry.instrument_http(app)

    async def deliveries_running() -> str:
        # The errors themselves are logged where they happen; readiness says only what.
        if deliverer.last_error is not None:
            return "delivery failing"
        if deliverer.announce_error is not None:
            return "outcomes not announced"
        return "ok"

    install_ops_routes(
        app,
        {
            "store": store_check(store.ping),
            "broker": broker_check(broker),
            **{
                CONSUMED[topic].check: caught_up_check(
                    subscriber, max_lag=CONSUMED[topic].max_lag, health=handler.health
                )
                for topic, (handler, subscriber) in consumed.items()
            },
            "deliveries": deliveries_running,
        },
        service=SERVICE,
        subscribers=[subscriber for _, subscriber in consumed.values()],
    )
    return app
