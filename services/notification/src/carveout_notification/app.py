"""Composition root of the notification service: settings, store, index, broker, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from carveout_contracts import Envelope, codec, topics
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
from .handlers import grants
from .settings import NotificationSettings
from .store import NotificationStore

SERVICE = "notification"
log = logging.getLogger("carveout.notification")


def create_app(
    settings: NotificationSettings | None = None, broker: KafkaBroker | None = None
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

    deliverer = Deliverer(store, settings, publish)
    dead_letter = dead_letter_publisher(broker, SERVICE)
    projector = grants.Notifier(store, settings.store_retry_attempts, on_queued=deliverer.wake)
    grant_events, grants_subscriber = consume(
        broker,
        topics.GRANTS,
        process=projector,
        is_processed=store.is_processed,
        dead_letter=dead_letter,
        group_id=settings.group_id,
        settings=settings,
        description="Grant events: who is to be told about each grant, and of what.",
        service=SERVICE,
    )
    breach_events, breaches_subscriber = consume(
        broker,
        topics.BREACHES,
        process=projector,
        is_processed=store.is_processed,
        dead_letter=dead_letter,
        group_id=settings.group_id,
        settings=settings,
        description="Breaches, told to the grantee's contacts and to subscribers.",
        service=SERVICE,
    )

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
    app.state.settings = settings
    app.state.tokens = tokens
    app.state.store = store
    app.state.broker = broker
    app.state.grant_events = grant_events
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
            "grants": caught_up_check(grants_subscriber, health=grant_events.health),
            "breaches": caught_up_check(
                breaches_subscriber, max_lag=100, health=breach_events.health
            ),
            "deliveries": deliveries_running,
        },
        service=SERVICE,
        subscribers=[grants_subscriber, breaches_subscriber],
    )
    return app
