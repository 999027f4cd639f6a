"""Composition root of the grant service: settings, store, relay, breach policy,
enforcement's acknowledgements, HTTP."""

from __future__ import annotations

import os
import socket
import uuid
from functools import partial

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from carveout_contracts import topics
from carveout_runtime.brokers import kafka_broker
from carveout_runtime.composition import ServiceShell
from carveout_runtime.stores import make_engine

from . import api, outbox_signal, transparency
from .acks_store import AckStore
from .clock import Clock, system_clock
from .deps import GrantContext
from .handlers.acks import AckFolder, never_processed
from .handlers.breaches import BreachPolicy
from .lease_store import RelayLeases
from .propagation_book import PropagationBook
from .relay import Leadership, OutboxRelay
from .service import GrantService
from .settings import GrantSettings
from .store import GrantStore

SERVICE = "grant"


def replica_id(port: int) -> str:
    """This process's name in the relay lease: unique to it, readable in the store."""
    return f"{socket.gethostname()}:{port}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def create_app(
    settings: GrantSettings | None = None,
    broker: KafkaBroker | None = None,
    clock: Clock = system_clock,
) -> FastAPI:
    """The grant service's app; ``clock`` is the time its rules read (tests set it)."""
    settings = settings or GrantSettings()
    store = GrantStore(make_engine(settings.database_url))
    shell = ServiceShell(
        SERVICE, settings, broker or kafka_broker(settings, "carveout-grant"), store.ping
    )
    leadership = Leadership(
        RelayLeases(store.engine),
        holder=replica_id(settings.port),
        lease_seconds=settings.relay_lease_seconds,
        renew_seconds=settings.relay_renew_seconds,
    )
    relay = OutboxRelay(
        store,
        shell.publish,
        settings.relay_poll_seconds,
        clock,
        leadership,
        watch_seconds=settings.relay_watch_seconds,
    )
    service = GrantService(
        store, relay, settings.relay_wait_seconds, record_max_bytes=settings.record_max_bytes
    )
    shell.consume(
        topics.BREACHES,
        BreachPolicy(store, relay, clock=clock),
        store.is_processed,
        "Breaches, counted against each grant's breach policy.",
        max_lag=100,
    )
    propagation = PropagationBook(AckStore(store.engine), clock)
    shell.consume(
        topics.ACKS,
        AckFolder(propagation.store, propagation, clock),
        never_processed,
        "Enforcement's acknowledgements and heartbeats: how far each grant version reached.",
        max_lag=100,
    )

    async def outbox_relayed() -> str:
        total, published = store.counts()
        return "ok" if published == total else f"{total - published} events to relay"

    shell.restores[topics.GRANTS] = relay.put_back

    async def read_partitions() -> None:
        await service.partitions.read_until_known(settings.kafka_bootstrap)

    shell.background["grants-partitions"] = read_partitions
    shell.background["outbox-relay"] = relay.run
    shell.background["outbox-signal"] = partial(outbox_signal.listen, store.engine, relay.wake)
    transparency.install(shell, store, settings)
    shell.checks["outbox"] = outbox_relayed
    return shell.app(
        description="System of record for regulator actions on carveout grants.",
        router=api.router,
        context=GrantContext(service, clock, propagation),
        produces=[topics.GRANTS, topics.CHECKPOINTS],
    )
