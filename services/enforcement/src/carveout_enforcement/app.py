"""Composition root of the enforcement service: settings, store, index, broker, HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from carveout_contracts import topics
from carveout_contracts.http import install_error_handlers
from carveout_contracts.ops import (
    broker_check,
    caught_up_check,
    install_ops_routes,
    store_check,
)
from carveout_contracts.runtime import (
    EventHandler,
    dead_letter_publisher,
    kafka_broker,
    make_engine,
    start_broker,
    subscribe,
)

from . import api
from .handlers import grants
from .settings import EnforcementSettings
from .store import EnforcementStore

SERVICE = "enforcement"
log = logging.getLogger("carveout.enforcement")


def create_app(
    settings: EnforcementSettings | None = None, broker: KafkaBroker | None = None
) -> FastAPI:
    settings = settings or EnforcementSettings()
    tokens = settings.token_book()
    store = EnforcementStore(make_engine(settings.database_url))
    index = grants.GrantIndex(list(store.load_grants()))
    broker = broker or kafka_broker(settings, "carveout-enforcement")

    projector = grants.GrantProjector(store, index, settings.store_retry_attempts)
    grant_events = EventHandler(
        topics.GRANTS,
        is_processed=store.is_processed,
        process=projector,
        dead_letter=dead_letter_publisher(broker, SERVICE),
        retry_attempts=settings.store_retry_attempts,
    )
    grants_subscriber = subscribe(
        broker,
        topics.GRANTS,
        grant_events,
        group_id=settings.group_id,
        settings=settings,
        description="Grant events, folded into the projection of grants over time.",
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start_broker(broker, settings.kafka_bootstrap)
        try:
            yield
        finally:
            await broker.stop()

    app = FastAPI(
        title="Carveout enforcement service",
        description="Judges every access against the grants in force when it happened.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tokens = tokens
    app.state.index = index
    app.state.store = store
    app.state.broker = broker
    app.state.grant_events = grant_events
    install_error_handlers(app)
    app.include_router(api.router)

    install_ops_routes(
        app,
        {
            "store": store_check(store.ping),
            "broker": broker_check(broker),
            "grants": caught_up_check(grants_subscriber),
        },
    )
    return app
