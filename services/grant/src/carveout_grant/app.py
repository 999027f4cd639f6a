"""Composition root of the grant service: settings, store, broker, relay, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from carveout_contracts import topics
from carveout_runtime import telemetry
from carveout_runtime.brokers import kafka_broker, start_broker
from carveout_runtime.consumers import consume, dead_letter_publisher
from carveout_runtime.docs import install_asyncapi
from carveout_runtime.edge import install_edge
from carveout_runtime.http import install_error_handlers
from carveout_runtime.ops import broker_check, caught_up_check, install_ops_routes, store_check
from carveout_runtime.stores import make_engine

from . import api
from .clock import Clock, system_clock
from .deps import GrantContext, install_context
from .handlers.breaches import BreachPolicy
from .relay import OutboxRelay, grants_log_size
from .service import GrantService
from .settings import GrantSettings
from .store import GrantStore

SERVICE = "grant"
log = logging.getLogger("carveout.grant")


def create_app(
    settings: GrantSettings | None = None,
    broker: KafkaBroker | None = None,
    clock: Clock = system_clock,
) -> FastAPI:
    """The grant service's app; ``clock`` is the time its rules read (tests set it)."""
    settings = settings or GrantSettings()
    telemetry.configure_tracing(SERVICE, settings)
    tokens = settings.token_book()
    store = GrantStore(make_engine(settings.database_url))
    broker = broker or kafka_broker(settings, "carveout-grant")
    relay = OutboxRelay(store, broker, settings.relay_poll_seconds, clock)
    service = GrantService(
        store, relay, settings.relay_wait_seconds, record_max_bytes=settings.record_max_bytes
    )
    policy = BreachPolicy(store, relay, clock=clock)
    breach_events, breaches_subscriber = consume(
        broker,
        topics.BREACHES,
        process=policy,
        is_processed=store.is_processed,
        dead_letter=dead_letter_publisher(broker, SERVICE),
        group_id=settings.group_id,
        settings=settings,
        description="Breaches, counted against each grant's breach policy.",
        service=SERVICE,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start_broker(broker, settings.kafka_bootstrap)
        await relay.restore_log_if_lost(await grants_log_size(settings.kafka_bootstrap))
        task = asyncio.create_task(relay.run(), name="outbox-relay")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await broker.stop()
            telemetry.flush_tracing()

    app = FastAPI(
        title="Carveout grant service",
        description="System of record for regulator actions on carveout grants.",
        version="1",
        lifespan=lifespan,
        docs_url="/docs",
    )
    install_context(app, GrantContext(service, clock))
    # Read by the runtime: its bearer checks and edge (tokens), its webhook check (settings).
    app.state.settings = settings
    app.state.tokens = tokens
    install_error_handlers(app)
    install_edge(app, settings)
    install_asyncapi(app, broker, produces=[topics.GRANTS, topics.DEADLETTER])
    app.include_router(api.router)
    telemetry.instrument_http(app)

    async def outbox_relayed() -> str:
        total, published = store.counts()
        return "ok" if published == total else f"{total - published} events to relay"

    install_ops_routes(
        app,
        {
            "store": store_check(store.ping),
            "broker": broker_check(broker),
            "outbox": outbox_relayed,
            "breaches": caught_up_check(
                breaches_subscriber, max_lag=100, health=breach_events.health
            ),
        },
        service=SERVICE,
        subscribers=[breaches_subscriber],
    )
    return app
