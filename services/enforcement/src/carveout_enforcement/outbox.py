"""Where recorded breaches go: published on ``carveout.breaches`` once they are in the store.

The breaches table is the outbox. A batch's breaches are recorded with its decisions in one
transaction, then published (keyed by grant, else grantee) and marked published. A crash
or a failed publish leaves them in the store, unpublished: they are published again, with
the same ids, before the next batch, at start-up and by :meth:`BreachOutbox.republish_forever`.
A replay publishes nothing (:class:`AlreadyPublished`): the log has them already.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from inspect import isawaitable
from typing import Any, Protocol

from carveout_contracts import topics
from carveout_runtime import telemetry
from carveout_runtime.retries import (
    ConsumerHealth,
    DependencyUnavailable,
    unavailable_dependency,
    with_retries,
)

from .rows import BreachRow
from .store import EnforcementStore

log = logging.getLogger("carveout.enforcement.outbox")

Publish = Callable[[bytes, str, bytes, str | None], Awaitable[Any]]
"""Send a value to a topic under a key, with a ``traceparent``; may return a delivery to
await (so many can be in flight at once)."""


class BreachSink(Protocol):
    """What the access pipeline does with breaches once they are recorded."""

    async def send(self, breaches: Sequence[BreachRow]) -> None:
        """Send the breaches of a batch just recorded."""
        ...

    async def send_left_over(self) -> None:
        """Send what an earlier send left in the store, if it failed."""
        ...


class AlreadyPublished:
    """A replay's breaches: the live service published them, the log has them."""

    async def send(self, breaches: Sequence[BreachRow]) -> None:
        return None

    async def send_left_over(self) -> None:
        return None


def span_attributes(breach: BreachRow) -> dict[str, str]:
    return {
        "carveout.breach_id": breach.breach_id,
        "carveout.access_event_id": breach.access_event_id,
        "carveout.grant_id": breach.grant_id or "",
        "carveout.severity": breach.severity,
    }


@dataclass(eq=False)
class BreachOutbox:
    """The live sink: publish recorded breaches on ``carveout.breaches``, then mark them."""

    store: EnforcementStore
    publish: Publish
    retry_attempts: int = 5
    health: ConsumerHealth | None = None
    """The access consumer's: a store that is unavailable shows it stalled."""
    unpublished: bool = field(default=False, init=False)
    """Whether a send failed, leaving breaches in the store for the next batch."""

    async def send(self, breaches: Sequence[BreachRow]) -> None:
        if breaches:
            self.unpublished = True
            await self._recorded(partial(self.publish_breaches, breaches))

    async def send_left_over(self) -> None:
        if self.unpublished:
            await self._recorded(self.publish_pending)

    async def _recorded(self, publish: Callable[[], Awaitable[Any]]) -> None:
        """Publish breaches already recorded. An unavailable broker is waited for (the batch
        is tried again, its breaches sent first); any other failure must not fail a batch
        that is recorded: its breaches wait in the store for :meth:`republish_forever`."""
        try:
            await publish()
        except Exception as exc:
            dependency = unavailable_dependency(exc, "broker")
            if dependency is not None:
                raise DependencyUnavailable(dependency, exc) from exc
            log.error("publishing recorded breaches failed; they will be sent again: %s", exc)
            return
        self.unpublished = False

    async def publish_breaches(self, breaches: Sequence[BreachRow]) -> None:
        """Publish breach events (keyed by grant, else grantee), then mark them published.

        Each is published with its access's ``traceparent`` (so the breach continues the
        access's trace) and, when tracing is on, inside a span that is a child of the access.
        """
        pending = []
        for breach in breaches:
            key = (breach.grant_id or breach.grantee_id).encode()
            with telemetry.traced(
                "breach condition.breached",
                breach.traceparent,
                partial(span_attributes, breach),
                link_current=True,  # to the batch's span
            ):
                value = breach.payload.encode()
                pending.append(await self.publish(value, topics.BREACHES, key, breach.traceparent))
        for sent in pending:
            if isawaitable(sent):
                await sent
        ids = [breach.breach_id for breach in breaches]
        await with_retries(
            lambda: self.store.mark_breaches_published(ids, datetime.now(UTC)),
            attempts=self.retry_attempts,
            health=self.health,
            what="marking breaches published",
        )

    async def publish_pending(self) -> int:
        """Publish breaches a crash or a failed publish left unpublished; returns how many."""
        total = 0
        while breaches := self.store.unpublished_breaches():
            await self.publish_breaches(breaches)
            total += len(breaches)
        self.unpublished = False
        return total

    async def put_back(self) -> int:
        """Publish every breach again, with the same ids: ``carveout.breaches`` restarted
        empty, and the grant service's breach policies must still count them all."""
        count = await asyncio.to_thread(self.store.mark_all_breaches_unpublished)
        await self.publish_pending()
        return count

    async def republish_forever(self, every_s: float = 5.0) -> None:
        """Keep publishing what is left unpublished, so a broker hiccup delays, never loses."""
        while True:
            await asyncio.sleep(every_s)
            try:
                if await self.publish_pending():
                    log.warning("published breaches left over by a failed publish")
            except Exception as exc:
                log.error("publishing left-over breaches failed, will retry: %s", exc)
