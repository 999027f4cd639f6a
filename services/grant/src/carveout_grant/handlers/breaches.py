"""Apply each grant's breach policy to ``carveout.breaches``: suspend or revoke, once.

The handler loads what the policy needs, asks :func:`~carveout_grant.breach_policy.
decide_breach_policy` what it orders, and records the breach, the action (grant change
and outbox event) and the processed mark in one transaction. The action's event id is
derived from the grant and the version it produces, so re-processing the same breaches
cannot announce it twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter

from carveout_contracts import ConditionBreached, codec
from carveout_contracts.common import iso_utc
from carveout_runtime.inbound import Inbound
from carveout_runtime.retries import with_retries

from ..breach_policy import PolicyDecision, decide_breach_policy, window_start
from ..clock import Clock, system_clock
from ..domain import Grant
from ..relay import OutboxRelay
from ..store import GrantChange, GrantStore, PolicyBreach

log = logging.getLogger("carveout.grant.policy")
POLICY_ACTIONS = Counter("carveout_policy_actions", "Breach policy actions", ["action"])


def breach_time(event: ConditionBreached) -> datetime:
    """When a breach happened: its access's time, else when it was found."""
    return event.data.access_occurred_at or event.occurred_at


def counted_breach(event: ConditionBreached) -> PolicyBreach | None:
    """The breach as a breach policy counts it: critical breaches of a grant, and only those.

    Kept whatever the grant's state when it arrives, so the table depends on the log alone.
    """
    d = event.data
    if d.severity != "critical" or not d.grant_id:
        return None
    return PolicyBreach(
        breach_id=d.breach_id, grant_id=d.grant_id, occurred_at=iso_utc(breach_time(event))
    )


@dataclass
class BreachPolicy:
    """The consumer of ``carveout.breaches``: counts each breach and applies its grant's
    breach policy. The store is retried ``retry_attempts`` times outside a live consumer."""

    store: GrantStore
    relay: OutboxRelay
    retry_attempts: int = 5
    clock: Clock = system_clock

    async def __call__(self, event: ConditionBreached, inbound: Inbound) -> None:
        now = self.clock()
        breach = counted_breach(event)
        grant = self.store.get(breach.grant_id) if breach is not None else None
        decision = None
        if breach is not None and grant is not None:
            decision = self._decide(grant, breach.breach_id, breach_time(event), now)
        action = None
        if grant is not None and decision is not None:
            # The action continues the trace of the breach that tripped the policy, and
            # is recorded only if the grant is still the version it was decided on.
            traceparent = inbound.cause_traceparent() or codec.new_traceparent()
            decided_on = {grant.grant_id: grant.version}
            action = GrantChange([decision.grant], decision.change, traceparent, decided_on)
        seq = await with_retries(
            lambda: self.store.record_breach(event, breach, action, now),
            attempts=self.retry_attempts,
            health=inbound.health,
            what="recording a breach",
        )
        if decision is not None and seq is not None:
            self._announce(decision)

    def _decide(
        self, grant: Grant, breach_id: str, happened: datetime, now: datetime
    ) -> PolicyDecision | None:
        """What the policy orders, counting the grant's stored critical breaches in the
        window and this one (stored only with the decision)."""
        since = window_start(happened, grant.breach_policy.window_seconds)
        stored = self.store.critical_breaches(grant.grant_id, since)
        counted = [*(b for b in stored if b[0] != breach_id), (breach_id, happened)]
        return decide_breach_policy(grant, counted, happened, now)

    def _announce(self, decision: PolicyDecision) -> None:
        """An action newly recorded: counted, logged, and relayed now."""
        POLICY_ACTIONS.labels(decision.action).inc()
        grant_id = decision.grant.grant_id
        log.warning("breach policy %s grant %s (%s)", decision.action, grant_id, decision.reason)
        self.relay.wake()
