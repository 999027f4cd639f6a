"""Trying again: an unavailable dependency without bound (the consumer shows as stalled),
any other failure a bounded number of times (stamina, backoff with jitter)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import stamina
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from prometheus_client import Gauge
from sqlalchemy import exc as sa_exc

from carveout_contracts.codec import DEAD_LETTER_ERROR_CHARS, clip

T = TypeVar("T")

RETRY_WAIT_INITIAL_S = 0.1
RETRY_WAIT_MAX_S = 5.0
RETRY_JITTER_S = 0.25
"""Backoff between attempts: doubling from the first wait up to the most, plus up to the
jitter at random, so consumers that failed together do not retry in step."""

ERROR_CHARS = DEAD_LETTER_ERROR_CHARS
"""Characters of an error's text a dead letter carries."""

STALLED = Gauge(
    "carveout_consumer_stalled_seconds",
    "How long a consumer has been waiting for an unavailable dependency (store, broker, "
    "grants log); 0 while it is processing.",
    ["service", "topic"],
)

_KAFKA_UNAVAILABLE = (KafkaConnectionError, KafkaTimeoutError)


class DependencyUnavailable(ConnectionError):
    """A dependency named by the code that found it unavailable (``broker``, ``store``)."""

    def __init__(self, dependency: str, error: BaseException) -> None:
        super().__init__(f"{dependency} unavailable: {error}")
        self.dependency = dependency


_SQLITE_UNAVAILABLE = re.compile(
    r"locked|busy|unable to open|disk i/o|readonly|database or disk is full", re.IGNORECASE
)


def _is_sqlite(exc: BaseException) -> bool:
    return type(getattr(exc, "orig", None)).__module__.startswith("sqlite3")


def unavailable_dependency(exc: BaseException, default: str | None = None) -> str | None:
    """The dependency an error says is unavailable (``store``, ``broker``), or ``None``.

    Only these are worth waiting for without bound: the same record will succeed once the
    dependency is back. ``default`` names the dependency a bare connection error or
    timeout came from (the caller knows whether it was talking to the store or the broker).
    """
    if isinstance(exc, DependencyUnavailable):
        return exc.dependency
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
            return "store"
        if isinstance(exc, sa_exc.OperationalError):
            # SQLite reports a lasting mistake ("too many SQL variables", "no such table")
            # as an OperationalError too: only a busy, locked or unreachable database is
            # worth waiting for; the rest fails the record like any other error.
            if _is_sqlite(exc) and not _SQLITE_UNAVAILABLE.search(str(exc.orig)):
                return None
            return "store"
        return None
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return "store"
    if isinstance(exc, _KAFKA_UNAVAILABLE) or (
        isinstance(exc, KafkaError) and getattr(exc, "retriable", False)
    ):
        return "broker"
    if default is not None and isinstance(exc, ConnectionError | TimeoutError):
        return default
    return None


def describe_error(exc: BaseException) -> str:
    """An error's type and message, bounded, for a dead letter (the log has the traceback)."""
    return clip(f"{type(exc).__name__}: {exc}", ERROR_CHARS)


class ConsumerHealth:
    """Whether a consumer is stalled on an unavailable dependency, since when, and on what.

    Shown by ``/readyz`` (through :func:`carveout_runtime.ops.caught_up_check`) and as
    ``carveout_consumer_stalled_seconds{service,topic}``.
    """

    def __init__(self, service: str, topic: str) -> None:
        self.service = service
        self.topic = topic
        self.since: float | None = None
        self.dependency: str | None = None
        STALLED.labels(service, topic).set_function(self.stalled_seconds)

    def stall(self, dependency: str) -> None:
        if self.since is None:
            self.since = time.monotonic()
        self.dependency = dependency

    def recover(self) -> None:
        self.since = None
        self.dependency = None

    def stalled_seconds(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def describe(self) -> str | None:
        """``stalled: store unavailable for 12s``, or ``None`` while processing."""
        if self.since is None:
            return None
        return f"stalled: {self.dependency} unavailable for {self.stalled_seconds():.0f}s"


class NotRetried(Exception):
    """An error that trying again cannot mend and that is no fault of the record: it
    propagates at once, for its caller to handle."""


@dataclass
class _TryAgain:
    """stamina's ``on`` hook: which errors to try again after.

    An unavailable dependency: while it lasts (``unavailable`` times at most, when given),
    marking the consumer stalled. Any other error: until ``failures`` attempts have failed.
    """

    what: str
    failures: int
    unavailable: int | None
    dependency: str
    health: ConsumerHealth | None
    failed: int = 0
    outages: int = 0

    def __call__(self, exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            # stamina asks about every exception, a task's cancellation included: trying
            # again after it would swallow the cancellation (a shutdown that hangs).
            return False
        if isinstance(exc, NotRetried):
            return False
        log = logging.getLogger("carveout")
        dependency = unavailable_dependency(exc, self.dependency)
        if dependency is not None:
            self.outages += 1
            if self.health is not None:
                self.health.stall(dependency)
            again = self.unavailable is None or self.outages < self.unavailable
            log.warning(
                "%s: the %s is unavailable (%d times)%s: %s",
                self.what,
                dependency,
                self.outages,
                ", retrying" if again else ", giving up",
                exc,
            )
            return again
        self.failed += 1
        if self.failed >= self.failures:
            if self.failures > 1:
                log.error("%s failed %d times: %s", self.what, self.failed, describe_error(exc))
            return False
        log.warning(
            "%s failed (attempt %d of %d), retrying: %s",
            self.what,
            self.failed,
            self.failures,
            describe_error(exc),
        )
        return True


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    failures: int = 1,
    unavailable: int | None = None,
    dependency: str = "store",
    health: ConsumerHealth | None = None,
) -> T:
    """Await ``operation``, trying again with backoff and jitter (stamina).

    While a dependency is unavailable it is tried again without bound (or ``unavailable``
    times), and ``health`` shows the consumer stalled; any other error is tried
    ``failures`` times in all, then propagates.
    """
    hook = _TryAgain(
        what, failures=failures, unavailable=unavailable, dependency=dependency, health=health
    )
    async for attempt in stamina.retry_context(
        on=hook,
        attempts=None,
        timeout=None,
        wait_initial=RETRY_WAIT_INITIAL_S,
        wait_max=RETRY_WAIT_MAX_S,
        wait_jitter=RETRY_JITTER_S,
    ):
        with attempt:
            result = await operation()
    if health is not None:
        health.recover()
    return result


async def with_retries(
    operation: Callable[[], T],
    *,
    attempts: int,
    what: str,
    health: ConsumerHealth | None,
    in_thread: bool = False,
    dependency: str = "store",
) -> T:
    """Run a store operation, trying again while the store is unavailable.

    For a live consumer (``health`` given: the consumer delivering the record) that is
    without bound, and the consumer shows as stalled; elsewhere ``attempts`` times. Any
    other error propagates at once: a consumer's own bounded retries of the whole record
    take it from there.
    """

    async def call() -> T:
        if in_thread:  # long store work: the event loop keeps serving meanwhile
            return await asyncio.to_thread(operation)
        return operation()

    return await retrying(
        call,
        what=what,
        unavailable=None if health is not None else attempts,
        dependency=dependency,
        health=health,
    )


async def wait_set(event: asyncio.Event, within_s: float) -> bool:
    """Wait at most ``within_s`` for ``event``; says whether it was set.

    ``asyncio.timeout``, not ``asyncio.wait_for``: in Python 3.11 the latter swallows a
    cancellation that arrives as the event is set, so a loop waiting on it (a relay, the
    deliveries) went on running after it was told to stop.
    """
    try:
        async with asyncio.timeout(within_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
