"""Composition root of the enforcement service: settings, store, grant projection and its
acknowledgements, access pipeline, breach outbox, decision endpoint, HTTP."""

from __future__ import annotations

import gc
import logging
from functools import partial
from typing import Any

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from carveout_contracts import topics
from carveout_runtime.brokers import kafka_broker
from carveout_runtime.composition import ServiceShell
from carveout_runtime.edge import BodyLimit
from carveout_runtime.log_restarts import fetched_highwaters
from carveout_runtime.retries import ConsumerHealth
from carveout_runtime.stores import make_engine

from . import api, transparency
from .acks import Acknowledger, default_enforcer_id
from .context import EnforcementContext
from .decision.authz import serve_authz
from .decision.decide import DecisionState
from .decision.endpoint import DecisionEndpoint, ServedFirst
from .freshness import GrantsLog
from .handlers import access, grants
from .handlers.access import AccessPipeline, PipelineSettings
from .outbox import BreachOutbox
from .ownership import ClaimOnAssignment, PartitionClaims
from .settings import EnforcementSettings
from .store import EnforcementStore

SERVICE = "enforcement"
log = logging.getLogger("carveout.enforcement")


def grants_group_id(group_id: str, enforcer_id: str) -> str:
    """The consumer group of one replica's grants consumer: its own, so that it is
    assigned every partition of ``carveout.grants``."""
    return f"{group_id}.grants.{enforcer_id}"


def create_app(
    settings: EnforcementSettings | None = None, broker: KafkaBroker | None = None
) -> FastAPI:
    settings = settings or EnforcementSettings()
    store = EnforcementStore(make_engine(settings.database_url))
    shell = ServiceShell(
        SERVICE, settings, broker or kafka_broker(settings, "carveout-enforcement"), store.ping
    )
    index = grants.GrantIndex(list(store.load_grants()))
    usage = store.load_usage(0)
    grants_log = GrantsLog(settings.kafka_bootstrap)
    enforcer_id = settings.enforcer_id or default_enforcer_id(settings.port)

    async def publish(value: bytes, topic: str, key: bytes, traceparent: str | None) -> Any:
        return await shell.publish(value, topic, key, traceparent, no_confirm=True)

    acks = Acknowledger(
        enforcer_id,
        grants_log.applied_positions,
        publish,
        queue_max=settings.ack_queue_max,
    )
    # Every replica applies every grant event, so each consumes all of carveout.grants
    # in a group of its own; whether an event changed anything is told by the projection
    # in memory (GrantProjector), since a peer sharing the store may have recorded it.
    grant_events = shell.consume(
        topics.GRANTS,
        grants.GrantProjector(
            store,
            index,
            settings.store_retry_attempts,
            on_applied=grants_log.applied,
            on_versions=acks.applied,
        ),
        grants.never_seen,
        "Grant events, folded into the projection of grants over time (every replica "
        "reads every partition, in a group of its own).",
        after=grants_log.applied,
        fetch_max_wait_ms=settings.grants_fetch_max_wait_ms,
        group_id=grants_group_id(settings.group_id, enforcer_id),
    )
    grants_log.subscriber = shell.subscribers[-1]

    async def set_aside(record: Any, reason: str, error: str) -> None:
        await shell.dead_letter(record.value, reason, error, record)

    access_health = ConsumerHealth(SERVICE, topics.ACCESS)
    outbox = BreachOutbox(
        store, publish, retry_attempts=settings.consumer_retry_attempts, health=access_health
    )
    decision_log = transparency.install(shell, store, settings)
    claims = PartitionClaims(store.engine, enforcer_id, usage, lambda: store.load_usage(0))
    pipeline = AccessPipeline(
        store,
        index,
        grants_log,
        usage,
        breaches=outbox,
        set_aside=set_aside,
        settings=PipelineSettings.of(settings),
        health=access_health,
        decision_log=decision_log,
        claims=claims,
    )
    access_subscriber = access.subscribe(
        shell.broker,
        pipeline,
        settings,
        ClaimOnAssignment(claims, access_health, released=pipeline.handled.forget),
    )
    shell.watch(
        topics.ACCESS, access_subscriber, max_lag=settings.batch_max_records, health=access_health
    )
    pipeline.handled.highwaters = partial(fetched_highwaters, access_subscriber)
    context = EnforcementContext(
        settings=settings,
        store=store,
        index=index,
        usage=usage,
        grants_log=grants_log,
        broker=shell.broker,
        grant_events=grant_events,
        pipeline=pipeline,
        outbox=outbox,
        decisions=DecisionState(index, usage, grants_log, settings),
    )

    async def settle() -> None:
        # Everything loaded so far lives as long as the process: keep the collector from
        # rescanning it on every collection (a large share of the hot path's CPU otherwise).
        gc.freeze()
        republished = await outbox.publish_pending()
        if republished:
            log.warning("published %d breaches left unpublished by a crash", republished)

    def mount_decisions(app: FastAPI) -> None:
        # POST /v1/decisions is answered ahead of the framework, which costs more per
        # request than judging does: outside the edge guard, the endpoint checks the token
        # and the body's size itself, cheaply. The route in api.py documents it.
        limit = BodyLimit(
            settings.decision_body_max_bytes, "CARVEOUT_ENFORCEMENT_DECISION_BODY_MAX_BYTES"
        )
        endpoint = DecisionEndpoint(context.decisions, limit, context.clock)
        app.add_middleware(ServedFirst, method="POST", path="/v1/decisions", endpoint=endpoint)
        # /v1/authz/ (Envoy ext_authz, nginx auth_request) the same way, on the same state.
        serve_authz(app, context.decisions, shell.broker, shell.background, context.clock)

    shell.resources.append(grants_log)
    shell.on_start.append(settle)
    shell.background["breach-republisher"] = outbox.republish_forever
    shell.restores[topics.BREACHES] = outbox.put_back
    # Accesses no store holds: those a broker restart took before they were judged are
    # counted (carveout_records_lost_total, /readyz).
    shell.handled[topics.ACCESS] = pipeline.handled
    shell.background["acknowledgements"] = acks.publish_acks
    shell.background["heartbeat"] = acks.beat_forever
    access_limit = BodyLimit(
        settings.access_body_max_bytes, "CARVEOUT_ENFORCEMENT_ACCESS_BODY_MAX_BYTES"
    )
    return shell.app(
        description="Judges every access against the grants in force when it happened.",
        router=api.router,
        context=context,
        produces=[topics.BREACHES, topics.ACKS, topics.CHECKPOINTS],
        body_limits={("POST", "/v1/access"): access_limit},
        mount=mount_decisions,
    )
