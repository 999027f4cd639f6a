"""The operator endpoints every service serves: ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .kafka import consumer_lag
from .telemetry import observe_lag

log = logging.getLogger("carveout.ops")

LAG_EVERY_S = 1.0
"""Shortest time between two measurements of the consumer lag (each asks the broker)."""

Check = Callable[[], Awaitable[str]]
"""A readiness check: answers ``"ok"``, or says what is wrong."""


def store_check(ping: Callable[[], None]) -> Check:
    """``unavailable`` when the store does not answer; why is logged, never shown."""

    async def check() -> str:
        try:
            ping()
        except Exception as exc:
            log.warning("readiness: the store does not answer: %s", exc)
            return "unavailable"
        return "ok"

    return check


def broker_check(broker: Any) -> Check:
    async def check() -> str:
        return "ok" if await broker.ping(timeout=1.0) else "unreachable"

    return check


def caught_up_check(subscriber: Any, max_lag: int = 0, health: Any = None) -> Check:
    """Ready once the subscriber has joined its group and is within ``max_lag`` of the end,
    and is not stalled on an unavailable dependency (``health``, a
    :class:`carveout_runtime.retries.ConsumerHealth`)."""

    async def check() -> str:
        stalled = health.describe() if health is not None else None
        if stalled is not None:
            return str(stalled)
        try:
            lag = await consumer_lag(subscriber.consumer)
        except Exception as exc:
            log.warning("readiness: cannot measure the consumer lag: %s", exc)
            return "lag unknown"
        if lag is None:
            return "joining consumer group"
        return "ok" if lag <= max_lag else f"{lag} behind"

    return check


def install_ops_routes(
    app: FastAPI,
    checks: dict[str, Check],
    *,
    service: str = "",
    subscribers: Sequence[Any] = (),
    records_lost: Callable[[], Mapping[str, int]] | None = None,
) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics``; a scrape of the metrics first measures the
    lag of ``subscribers`` (``carveout_consumer_lag``, labelled with ``service``), at most
    once a second however often it is scraped. ``/readyz`` also says, per topic, how many
    records were lost with a broker that restarted empty (``records_lost``), if any."""
    lag_measured = [-LAG_EVERY_S]

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "alive"}

    @app.get(
        "/readyz",
        tags=["ops"],
        responses={503: {"description": "Not ready: each check says what is wrong."}},
    )
    async def readyz() -> JSONResponse:
        """Ready: connected to the broker and the store, and caught up on its input topics."""
        results = {name: await check() for name, check in checks.items()}
        ready = all(value == "ok" for value in results.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": results}
        lost = dict(records_lost()) if records_lost is not None else {}
        if lost:
            # Told, not failed: the service works on; what is gone cannot come back.
            body["records_lost"] = lost
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus metrics (``carveout_*``: see the README's "Tracing and metrics")."""
        now = time.monotonic()
        if subscribers and now - lag_measured[0] >= LAG_EVERY_S:
            lag_measured[0] = now
            await observe_lag(service, subscribers)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
