"""Apply each grant's breach policy to ``carveout.breaches``: suspend or revoke, once.

A consumed breach, the policy action it trips (grant change and outbox event) and the
processed mark commit together. The action's event id is derived from the grant and the
version it produces, so re-processing the same breaches cannot announce it twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from carveout_contracts import ConditionBreached, Envelope, codec, topics
from carveout_contracts.common import iso_utc, utcnow
from carveout_runtime.inbound import Inbound
from carveout_runtime.retries import ConsumerHealth, with_retries

from ..domain import Grant, apply, policy_action, revoke, suspend
from ..relay import OutboxRelay
from ..store import GrantStore, PolicyBreach

log = logging.getLogger("carveout.grant.policy")
POLICY_ACTIONS = Counter("carveout_policy_actions", "Breach policy actions", ["action"])
ACTION_NAMESPACE = uuid.UUID("0e7f6a52-31c4-4b8e-9d0a-5c2b1e4f7a93")


def counted_breach(event: ConditionBreached) -> PolicyBreach | None:
    """The breach as a breach policy counts it: critical breaches of a grant, and only those.

    Kept whatever the grant's state when it arrives, so the table depends on the log alone.
    """
    d = event.data
    if d.severity != "critical" or not d.grant_id:
        return None
    happened = d.access_occurred_at or event.occurred_at
    return PolicyBreach(breach_id=d.breach_id, grant_id=d.grant_id, occurred_at=iso_utc(happened))


def window_start(happened: datetime, window_seconds: int) -> datetime:
    """Where the sliding window ending at ``happened`` starts, never before year 1.

    A breach may carry any date the contract admits (``0001-01-01`` included): the window
    is clamped rather than overflowing, so such a breach is counted like any other.
    """
    try:
        return happened - timedelta(seconds=window_seconds)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


class BreachPolicy:
    def __init__(
        self,
        store: GrantStore,
        relay: OutboxRelay,
        retry_attempts: int = 5,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.relay = relay
        self.retry_attempts = retry_attempts
        self.clock = clock

    async def __call__(self, event: ConditionBreached, inbound: Inbound) -> None:
        d = event.data
        now = self.clock()
        health = inbound.health
        breach = counted_breach(event)
        grant = self.store.get(breach.grant_id) if breach is not None else None
        if breach is None or grant is None or grant.lifecycle == "revoked":
            await self._record(event, breach, None, now, health)
            return
        happened = d.access_occurred_at or event.occurred_at
        since = window_start(happened, grant.breach_policy.window_seconds)
        recent = self.store.critical_breaches(grant.grant_id, since)
        recent = [*[r for r in recent if r[0] != d.breach_id], (d.breach_id, happened)]
        ordered = policy_action(grant, recent, happened)
        if ordered is None:
            await self._record(event, breach, None, now, health)
            return
        action, breach_ids = ordered
        version = grant.version + 1
        event_id = uuid.uuid5(ACTION_NAMESPACE, f"{grant.grant_id}/{action}/{version}")
        reason = (
            f"breach policy: {len(breach_ids)} critical breaches within "
            f"{grant.breach_policy.window_seconds}s"
        )
        change = (
            revoke(
                [grant],
                reason,
                carveout_id=grant.carveout_id,
                by="breach-policy",
                now=now,
                cause="breach_policy",
                breach_ids=breach_ids,
                event_id=event_id,
            )
            if action == "revoke"
            else suspend(
                grant,
                reason,
                by="breach-policy",
                now=now,
                cause="breach_policy",
                breach_ids=breach_ids,
                event_id=event_id,
            )
        )
        if self.store.has_event(str(event_id)):
            await self._record(event, breach, None, now, health)  # ordered before; announced once
            return
        seq = await self._record(
            event,
            breach,
            (
                [apply(grant, change)],
                change,
                # The action continues the trace of the breach that tripped the policy.
                inbound.cause_traceparent() or codec.new_traceparent(),
                {grant.grant_id: grant.version},
            ),
            now,
            health,
        )
        POLICY_ACTIONS.labels(action).inc()
        log.warning("breach policy %s grant %s (%s)", action, grant.grant_id, reason)
        if seq is not None:
            self.relay.wake()

    async def _record(
        self,
        event: ConditionBreached,
        breach: PolicyBreach | None,
        action: tuple[list[Grant], Envelope, str | None, dict[str, int]] | None,
        now: datetime,
        health: ConsumerHealth | None,
    ) -> int | None:
        return await with_retries(
            lambda: self.store.record_breach(
                event_id=str(event.event_id),
                topic=topics.BREACHES,
                breach=breach,
                action=action,
                at=now,
            ),
            attempts=self.retry_attempts,
            health=health,
            what="recording a breach",
        )
