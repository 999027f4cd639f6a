"""Composition root of the enforcement service: settings, store, index, broker, HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from carveout_contracts import codec, topics
from carveout_contracts.http import install_error_handlers
from carveout_contracts.kafka import consumer_lag
from carveout_contracts.runtime import kafka_broker, make_engine, start_broker
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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

    async def dead_letter(value: bytes, reason: str, error: str, message: KafkaMessage) -> None:
        event = codec.dead_letter_event(
            message.raw_message, consumer=SERVICE, reason=reason, error=error, value=value
        )
        await broker.publish(
            codec.encode_value(event),
            topics.DEADLETTER,
            key=event.key.encode(),
            headers={"content-type": codec.CONTENT_TYPE},
        )
        log.warning("dead-lettered %s message: %s: %s", event.data.source_topic, reason, error)

    projector = grants.GrantProjector(store, index, dead_letter, settings.store_retry_attempts)
    grants_subscriber = grants.subscribe(
        broker,
        projector,
        group_id=settings.group_id,
        session_timeout_ms=settings.session_timeout_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
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
    app.state.projector = projector
    install_error_handlers(app)
    app.include_router(api.router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            store.ping()
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"unavailable: {exc}"
        checks["broker"] = "ok" if await broker.ping(timeout=1.0) else "unreachable"
        try:
            lag = await consumer_lag(grants_subscriber.consumer)
        except Exception as exc:
            lag, checks["grants"] = None, f"unknown: {exc}"
        if "grants" not in checks:
            checks["grants"] = (
                "joining consumer group" if lag is None else "ok" if lag == 0 else f"{lag} behind"
            )
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
