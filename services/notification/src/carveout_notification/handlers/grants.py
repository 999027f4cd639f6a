"""Fold grant events and breaches into the contacts projection, and queue every
notification they call for.

Each consumed event's effects (contacts, the contacts' own subscriptions, the
notifications due, with one id per event and subscription) and its processed mark
commit together; delivery happens after, from the persisted schedule. The consumer
(``carveout_runtime.consumers.EventHandler``) has already skipped an event processed
before; what the event changes is decided by :func:`~..fanout.effects_of`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from carveout_contracts.common import utcnow
from carveout_runtime.inbound import Inbound
from carveout_runtime.retries import with_retries

from ..fanout import NotifiableEvent, effects_of, grants_of
from ..store import NotificationStore


@dataclass
class Notifier:
    """The handler of ``carveout.grants`` and ``carveout.breaches``: load, decide, save, wake."""

    store: NotificationStore
    retry_attempts: int
    on_queued: Callable[[], None] | None = None
    """Told when notifications were queued: the deliverer's wake-up."""
    clock: Callable[[], datetime] = utcnow

    async def __call__(self, event: NotifiableEvent, inbound: Inbound) -> None:
        now = self.clock()
        effects = effects_of(
            event,
            before={grant_id: self.store.get_contacts(grant_id) for grant_id in grants_of(event)},
            subscriptions=self.store.subscriptions_created(),
            appended_ms=inbound.appended_ms,
            now=now,
            traceparent=inbound.cause_traceparent(),
        )
        await with_retries(
            lambda: self.store.record_event(
                effects, event_id=str(event.event_id), topic=event.TOPIC, at=now
            ),
            attempts=self.retry_attempts,
            health=inbound.health,
            what=f"recording {event.type}",
        )
        if effects.notifications and self.on_queued is not None:
            self.on_queued()
