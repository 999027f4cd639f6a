"""Composition root of the enforcement service: settings, store, index, broker, HTTP."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from carveout_contracts import topics
from carveout_runtime import telemetry
from carveout_runtime.brokers import kafka_broker, start_broker
from carveout_runtime.consumers import consume, dead_letter_publisher
from carveout_runtime.docs import install_asyncapi
from carveout_runtime.edge import BodyLimit, install_edge
from carveout_runtime.http import install_error_handlers
from carveout_runtime.ops import broker_check, caught_up_check, install_ops_routes, store_check
from carveout_runtime.retries import ConsumerHealth
from carveout_runtime.stores import make_engine

from . import api
from .context import EnforcementContext
from .decision.decide import DecisionState
from .decision.endpoint import DecisionEndpoint, ServedFirst
from .freshness import GrantsLog
from .handlers import access, grants
from .handlers.access import AccessPipeline, PipelineSettings
from .outbox import BreachOutbox
from .settings import EnforcementSettings
from .store import EnforcementStore

SERVICE = "enforcement"
log = logging.getLogger("carveout.enforcement")


def create_app(
    settings: EnforcementSettings | None = None, broker: KafkaBroker | None = None
) -> FastAPI:
    settings = settings or EnforcementSettings()
    telemetry.configure_tracing(SERVICE, settings)
    tokens = settings.token_book()
    store = EnforcementStore(make_engine(settings.database_url))
    index = grants.GrantIndex(list(store.load_grants()))
    usage = store.load_usage(0)
    broker = broker or kafka_broker(settings, "carveout-enforcement")
    grants_log = GrantsLog(settings.kafka_bootstrap)
    dead_letter = dead_letter_publisher(broker, SERVICE)

    projector = grants.GrantProjector(
        store, index, settings.store_retry_attempts, on_applied=grants_log.applied
    )
    grant_events, grants_subscriber = consume(
        broker,
        topics.GRANTS,
        process=projector,
        is_processed=store.is_processed,
        dead_letter=dead_letter,
        group_id=settings.group_id,
        settings=settings,
        description="Grant events, folded into the projection of grants over time.",
        after=grants_log.applied,
        fetch_max_wait_ms=settings.grants_fetch_max_wait_ms,
        service=SERVICE,
    )
    grants_log.subscriber = grants_subscriber

    async def publish(value: bytes, topic: str, key: bytes, traceparent: str | None) -> Any:
        headers = telemetry.kafka_headers(traceparent)
        return await broker.publish(value, topic, key=key, headers=headers, no_confirm=True)

    async def dead_letter_record(record: Any, reason: str, error: str) -> None:
        await dead_letter(record.value, reason, error, record)

    access_health = ConsumerHealth(SERVICE, topics.ACCESS)
    outbox = BreachOutbox(
        store, publish, retry_attempts=settings.consumer_retry_attempts, health=access_health
    )
    pipeline = AccessPipeline(
        store,
        index,
        grants_log,
        usage,
        breaches=outbox,
        set_aside=dead_letter_record,
        settings=PipelineSettings.of(settings),
        health=access_health,
    )
    access_subscriber = access.subscribe(broker, pipeline, settings)
    context = EnforcementContext(
        settings=settings,
        store=store,
        index=index,
        usage=usage,
        grants_log=grants_log,
        broker=broker,
        grant_events=grant_events,
        pipeline=pipeline,
        outbox=outbox,
        decisions=DecisionState(index, usage, grants_log, settings),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await grants_log.start()
        await start_broker(broker, settings.kafka_bootstrap)
        # Everything loaded so far lives as long as the process: keep the collector from
        # rescanning it on every collection (a large share of the hot path's CPU otherwise).
        gc.freeze()
        republished = await outbox.publish_pending()
        if republished:
            log.warning("published %d breaches left unpublished by a crash", republished)
        republisher = asyncio.create_task(outbox.republish_forever(), name="breach-republisher")
        try:
            yield
        finally:
            republisher.cancel()
            await broker.stop()
            await grants_log.stop()
            telemetry.flush_tracing()

    app = FastAPI(
        title="Carveout enforcement service",
        description="Judges every access against the grants in force when it happened.",
        version="1",
        lifespan=lifespan,
    )
    app.state.context = context
    app.state.tokens = tokens  # where the edge and the role checks read it
    install_error_handlers(app)
    access_limit = BodyLimit(
        settings.access_body_max_bytes, "CARVEOUT_ENFORCEMENT_ACCESS_BODY_MAX_BYTES"
    )
    install_edge(app, settings, {("POST", "/v1/access"): access_limit})
    install_asyncapi(app, broker, produces=[topics.BREACHES, topics.DEADLETTER])
    app.include_router(api.router)
    # POST /v1/decisions is answered ahead of the framework, which costs more per request
    # than judging does: outside the edge guard, the endpoint checks the token and the
    # body's size itself, cheaply. The route in api.py documents it.
    decision_limit = BodyLimit(
        settings.decision_body_max_bytes, "CARVEOUT_ENFORCEMENT_DECISION_BODY_MAX_BYTES"
    )
    decisions = DecisionEndpoint(context.decisions, decision_limit, context.clock)
    app.add_middleware(ServedFirst, method="POST", path="/v1/decisions", endpoint=decisions)
    telemetry.instrument_http(app)

    install_ops_routes(
        app,
        {
            "store": store_check(store.ping),
            "broker": broker_check(broker),
            "grants": caught_up_check(grants_subscriber, health=grant_events.health),
            "access": caught_up_check(
                access_subscriber, max_lag=settings.batch_max_records, health=pipeline.health
            ),
        },
        service=SERVICE,
        subscribers=[grants_subscriber, access_subscriber],
    )
    return app
