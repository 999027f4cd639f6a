"""What every service's composition root assembles the same way.

A service builds its own parts (store, handlers, pipelines) in its ``app.py`` and hands
them to a :class:`ServiceShell`, which wires what the three services share: tracing,
consumers with their dead letters and readiness checks, the broker's life with the
resources and background tasks around it, and the HTTP app with its edge guard, error
answers, AsyncAPI document and operator routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fastapi import APIRouter, Request

from carveout_contracts import topics

from . import telemetry
from .app_state import installed
from .consumers import DeadLetter, EventHandler, Process, consume, dead_letter_publisher
from .event_signing import EventSigning
from .http import AnyRole
from .log_restarts import HandledOffsets, LogRestartWatch, Restore
from .ops import Check, broker_check, caught_up_check, install_ops_routes, store_check
from .settings import SharedSettings, WebhookRules

if TYPE_CHECKING:
    from fastapi import FastAPI
    from faststream.kafka import KafkaBroker

    from .edge import BodyLimit
    from .tlog import CheckpointBook, TransparencyLogs


class Resource(Protocol):
    """Something the service holds open while it runs (a client of its own, say)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class ServiceShell:
    """One service's shared wiring; ``app()`` makes its ASGI app."""

    name: str
    settings: SharedSettings
    broker: KafkaBroker
    ping_store: Callable[[], None]
    checks: dict[str, Check] = field(default_factory=dict)
    """Readiness checks beyond the store, the broker and the consumers."""
    subscribers: list[Any] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    """Started before the broker starts, stopped after it stops."""
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Run once the broker is up, before the app serves."""
    background: dict[str, Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=dict)
    """Tasks that run as long as the process, by name; cancelled at shutdown."""
    routers: list[APIRouter] = field(default_factory=list)
    """Routes beside the service's own router (its transparency logs')."""
    restores: dict[str, Restore] = field(default_factory=dict)
    """Topics this service's store is the record of, and how to put each back when the
    broker restarted empty (:mod:`.log_restarts`)."""
    handled: dict[str, HandledOffsets] = field(default_factory=dict)
    """Consumed topics no store can put back: their unhandled records lost in a broker
    restart are counted."""
    dead_letter: DeadLetter = field(init=False)
    signing: EventSigning = field(init=False)
    """The key the service signs its events with, and the keys it checks others' against."""

    def __post_init__(self) -> None:
        telemetry.configure_tracing(self.name, self.settings)
        self.dead_letter = dead_letter_publisher(self.broker, self.name)
        self.signing = self.settings.event_signing(self.name)

    async def publish(
        self, value: bytes, topic: str, key: bytes, traceparent: str | None = None, **options: Any
    ) -> Any:
        """Publish an event's value, signed, continuing the trace ``traceparent`` names."""
        headers = self.signing.sign(value, telemetry.kafka_headers(traceparent))
        return await self.broker.publish(value, topic, key=key, headers=headers, **options)

    def consume(
        self,
        topic: str,
        process: Process,
        is_processed: Callable[[str], bool],
        description: str,
        *,
        max_lag: int = 0,
        group_id: str | None = None,
        **options: Any,
    ) -> EventHandler:
        """Consume ``topic`` in the service's group (or ``group_id``); ready once within
        ``max_lag`` of its end."""
        handler, subscriber, commits = consume(
            self.broker,
            topic,
            process=process,
            is_processed=is_processed,
            dead_letter=self.dead_letter,
            group_id=group_id or self.settings.group_id,
            settings=self.settings,
            description=description,
            service=self.name,
            signatures=self.signing,
            **options,
        )
        self.watch(topic, subscriber, max_lag=max_lag, health=handler.health)
        self.background[f"commits {group_id or self.settings.group_id}/{topic}"] = (
            functools.partial(commits.run, subscriber)
        )
        return handler

    def watch(self, topic: str, subscriber: Any, *, max_lag: int = 0, health: Any = None) -> None:
        """Count ``subscriber`` in readiness (caught up on ``topic``) and in the lag metric."""
        self.subscribers.append(subscriber)
        self.checks[topic.removeprefix("carveout.")] = caught_up_check(
            subscriber, max_lag=max_lag, health=health
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        from .brokers import start_broker

        try:
            async with contextlib.AsyncExitStack() as stack:
                for resource in self.resources:
                    await resource.start()
                    stack.push_async_callback(resource.stop)
                await start_broker(self.broker, self.settings.kafka_bootstrap)
                stack.push_async_callback(self.broker.stop)
                for step in self.on_start:
                    await step()
                background = dict(self.background)
                if self.restores or self.handled:
                    background["log-restarts"] = self.log_restarts.run
                tasks = [asyncio.create_task(run(), name=n) for n, run in background.items()]
                try:
                    yield
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            telemetry.flush_tracing()

    def app(
        self,
        *,
        description: str,
        router: APIRouter,
        context: object,
        produces: Sequence[str],
        body_limits: Mapping[tuple[str, str], BodyLimit] | None = None,
        mount: Callable[[FastAPI], None] | None = None,
    ) -> FastAPI:
        """The service's ASGI app, titled after the service: ``router`` behind the edge
        guard, ``context`` (the typed parts its routes depend on: :func:`service_context`)
        on ``app.state.context``, the operator routes beside.

        ``mount`` adds what must sit outside the routes but inside the HTTP tracing (the
        decision endpoint's fast path).
        """
        from fastapi import FastAPI

        from .docs import install_asyncapi
        from .edge import install_edge
        from .http import install_error_handlers

        title = f"Carveout {self.name} service"
        app = FastAPI(title=title, description=description, version="1", lifespan=self._lifespan)
        app.state.context = context
        install_error_handlers(app)
        allow_networks = (
            self.settings.allow_networks if isinstance(self.settings, WebhookRules) else ()
        )
        install_edge(app, self.settings, body_limits, allow_networks=allow_networks)
        install_asyncapi(app, self.broker, produces=[*produces, topics.DEADLETTER])
        app.include_router(router)
        for more in self.routers:
            app.include_router(more)
        app.include_router(keys_router(self.signing))
        if mount is not None:
            mount(app)
        telemetry.instrument_http(app)
        install_ops_routes(
            app,
            {
                "store": store_check(self.ping_store),
                "broker": broker_check(self.broker),
                **self.checks,
            },
            service=self.name,
            subscribers=self.subscribers,
            records_lost=lambda: self.log_restarts.lost,
        )
        return app

    def sign_checkpoints(
        self, logs: TransparencyLogs, book: CheckpointBook, interval_s: float
    ) -> None:
        """Sign the transparency logs' checkpoints with the service's key in the background,
        publish them, and put them back when the broker restarted empty."""
        from .tlog import Checkpointer

        checkpointer = Checkpointer(
            logs, book, self.signing.note_signer(), self.publish, self.name, interval_s=interval_s
        )
        self.background["checkpoints"] = checkpointer.run_forever
        self.restores[topics.CHECKPOINTS] = checkpointer.put_back

    @functools.cached_property
    def log_restarts(self) -> LogRestartWatch:
        return LogRestartWatch(
            self.name,
            self.settings.kafka_bootstrap,
            self.restores,
            self.handled,
            pulse=topics.ACKS,
            epoch_file=self.settings.broker_epoch_file,
        )


C = TypeVar("C")


def context_of(app: Any, kind: type[C]) -> C:
    """The ``kind`` context :meth:`ServiceShell.app` gave ``app``."""
    return installed(
        app, "context", kind, f"this app has no {kind.__name__}: build it with create_app"
    )


def service_context(kind: type[C]) -> Callable[[Request], Awaitable[C]]:
    """A FastAPI dependency giving the ``kind`` context :meth:`ServiceShell.app` installed:
    ``Context = Annotated[GrantContext, Depends(service_context(GrantContext))]``."""

    async def context(request: Request) -> C:
        return context_of(request.app, kind)

    return context


def keys_router(signing: EventSigning) -> APIRouter:
    """``GET /v1/keys``: the public keys the service signs with, for consumers and auditors."""
    router = APIRouter(tags=["keys"])

    @router.get("/v1/keys")
    async def public_keys(_caller: AnyRole) -> dict[str, Any]:
        """The service's Ed25519 public keys (``kid``, base64 ``public_key``), newest first;
        the current one signs new events, the older ones verify what they signed. Services
        that sign checkpoints also give each key's signed-note verifier key."""
        return {"service": signing.service, "keys": signing.public_keys()}

    return router
