"""Consume ``carveout.grants`` into the grant projection: dedupe, load, apply, save, index."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from carveout_contracts import PoisonMessage, codec, topics
from carveout_contracts.runtime import with_retries
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import DefaultSubscriber

from ..domain import GrantView, affected_grants, apply
from ..store import EnforcementStore

log = logging.getLogger("carveout.enforcement.grants")

SERVICE = "enforcement"
DeadLetter = Callable[[bytes, str, str, KafkaMessage], Awaitable[None]]


class GrantIndex:
    """Every grant's view, in memory, by id and by (grantee, model)."""

    def __init__(self, views: Sequence[GrantView] = ()) -> None:
        self.by_id: dict[str, GrantView] = {}
        self.by_grantee_model: dict[tuple[str, str], list[str]] = {}
        for view in views:
            self.put(view)

    def put(self, view: GrantView) -> None:
        if view.grant_id not in self.by_id:
            ids = self.by_grantee_model.setdefault((view.grantee_id, view.model_id), [])
            ids.append(view.grant_id)
        self.by_id[view.grant_id] = view

    def get(self, grant_id: str) -> GrantView | None:
        return self.by_id.get(grant_id)


class GrantProjector:
    def __init__(
        self,
        store: EnforcementStore,
        index: GrantIndex,
        dead_letter: DeadLetter,
        retry_attempts: int = 5,
    ) -> None:
        self.store = store
        self.index = index
        self.dead_letter = dead_letter
        self.retry_attempts = retry_attempts
        self.applied = 0

    async def handle(self, value: bytes, message: KafkaMessage) -> None:
        try:
            event = codec.decode(topics.GRANTS, value)
        except PoisonMessage as poison:
            await self.dead_letter(value, poison.reason, poison.error, message)
            return
        event_id = str(event.event_id)
        if await with_retries(
            lambda: self.store.is_processed(event_id),
            attempts=self.retry_attempts,
            what="checking a grant event",
        ):
            return
        changed = []
        for grant_id in affected_grants(event):
            view = apply(self.index.get(grant_id), event, grant_id)
            if view is None:
                log.warning("%s names grant %s, never issued here; skipped", event.type, grant_id)
            elif view is not self.index.get(grant_id):
                changed.append(view)
        now = datetime.now(UTC)
        await with_retries(
            lambda: self.store.save_grants(changed, event_id=event_id, topic=topics.GRANTS, at=now),
            attempts=self.retry_attempts,
            what="saving the grant projection",
        )
        for view in changed:
            self.index.put(view)
        self.applied += 1


def subscribe(
    broker: KafkaBroker,
    projector: GrantProjector,
    *,
    group_id: str,
    session_timeout_ms: int,
    fetch_max_wait_ms: int,
) -> DefaultSubscriber:
    async def raw_body(message: KafkaMessage) -> bytes:
        return bytes(message.body)

    subscriber = broker.subscriber(
        topics.GRANTS,
        group_id=group_id,
        decoder=raw_body,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(100, session_timeout_ms // 6),
        rebalance_timeout_ms=session_timeout_ms,
        fetch_max_wait_ms=fetch_max_wait_ms,
        title="enforcement/grants",
        description="Grant events, folded into the projection of grants over time.",
    )

    @subscriber
    async def on_grant_event(body: bytes, message: KafkaMessage) -> None:
        await projector.handle(body, message)

    return subscriber
