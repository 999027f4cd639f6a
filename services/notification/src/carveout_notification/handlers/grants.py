"""Fold grant events and breaches into the contacts projection, and queue every
notification they call for.

Each consumed event's effects (contacts, the contacts' own subscriptions, the
notifications due, with one id per event and subscription) and its processed mark
commit together; delivery happens after, from the persisted schedule. The consumer
(``carveout_runtime.consumers.EventHandler``) has already skipped an event processed
before; what the event changes is decided by :func:`~..fanout.effects_of`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aiokafka.errors import KafkaError

from carveout_contracts import ConditionBreached
from carveout_contracts.common import utcnow
from carveout_runtime.inbound import Inbound
from carveout_runtime.retries import with_retries

from ..domain import GrantContacts
from ..fanout import NotifiableEvent, Subscribed, effects_of, grants_of
from ..store import NotificationStore

log = logging.getLogger("carveout.notification.fanout")

ASK_AGAIN_S = 0.5
"""Between two questions to the broker that failed, while a breach waits for its grant."""


class GrantsStored(Protocol):
    """Whether the grant events on the log now are all in the store (whichever replica
    read them): :class:`carveout_runtime.group_progress.GroupProgress`."""

    async def wait_caught_up(self, within_s: float) -> bool: ...


@dataclass
class Notifier:
    """The handler of ``carveout.grants`` and ``carveout.breaches``: load, decide, save, wake."""

    store: NotificationStore
    retry_attempts: int
    on_queued: Callable[[], None] | None = None
    """Told when notifications were queued: the deliverer's wake-up."""
    clock: Callable[[], datetime] = utcnow
    grants_stored: GrantsStored | None = None
    """Waited on before a breach of a grant the store does not know is told (``None``: a
    replay, which folds each grant's events before the breaches the log received after)."""
    grants_sync_s: float = 5.0

    async def __call__(self, event: NotifiableEvent, inbound: Inbound) -> None:
        # The store is read and written in a worker thread: the event loop meanwhile runs
        # the deliveries and the other consumer, which share this process.
        before, subscriptions = await asyncio.to_thread(self._load, event)
        if isinstance(event, ConditionBreached) and None in before.values():
            await self._wait_for_grant_events(inbound)
            before, subscriptions = await asyncio.to_thread(self._load, event)
        now = self.clock()
        effects = effects_of(
            event,
            before=before,
            subscriptions=subscriptions,
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
            in_thread=True,
        )
        if effects.notifications and self.on_queued is not None:
            self.on_queued()

    def _load(
        self, event: NotifiableEvent
    ) -> tuple[dict[str, GrantContacts | None], list[Subscribed]]:
        """What the fan-out decides on: the contacts of the event's grants, and the
        subscriptions that can want it."""
        grant_ids = grants_of(event)
        contacts = {grant_id: self.store.get_contacts(grant_id) for grant_id in grant_ids}
        return contacts, self.store.subscriptions_created(grant_ids)

    async def _wait_for_grant_events(self, inbound: Inbound) -> None:
        """Wait, without bound, until every grant event on the log now is stored.

        A breach is published after enforcement applied its grant's events, so those are
        on ``carveout.grants`` already; but the two topics are read apart, and a breach
        told before its grant is known here would miss the grant's contacts (which a
        replay, folding the log in order, would tell). Meanwhile the consumer shows as
        stalled on the grants log.
        """
        if self.grants_stored is None:
            return
        while not await self._grant_events_stored(self.grants_stored):
            if inbound.health is not None:
                inbound.health.stall("grants log")
            log.warning("grant events not stored within %ss; the breach waits", self.grants_sync_s)
        if inbound.health is not None:
            inbound.health.recover()

    async def _grant_events_stored(self, grants_stored: GrantsStored) -> bool:
        try:
            return await grants_stored.wait_caught_up(self.grants_sync_s)
        except (KafkaError, OSError) as exc:  # a broker restarting: not known yet
            log.warning("cannot tell yet whether the grant events are stored: %s", exc)
            await asyncio.sleep(ASK_AGAIN_S)
            return False
