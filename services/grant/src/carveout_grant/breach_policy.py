"""The breach policy, pure: what a grant's critical breaches in its window order.

A grant's ``breach_policy`` counts its critical breaches in a sliding window and
suspends or revokes it (DESIGN §3). :func:`decide_breach_policy` is the whole rule over
explicit inputs (the grant, its counted breaches, when the breach happened, now); the
handler of ``carveout.breaches`` loads those, records what it returns and relays it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID, uuid5

from carveout_contracts import CarveoutRevoked, GrantSuspended

from .domain import Grant, PolicyTrip, apply, revoke_grant, suspend

PolicyAction = Literal["suspend", "revoke"]


def policy_action(
    grant: Grant, recent_critical: Sequence[tuple[str, datetime]], now: datetime
) -> tuple[PolicyAction, list[str]] | None:
    """What the grant's breach policy orders, given its critical breaches (id, time).

    Counts the breaches in the sliding window ending at ``now`` (and none from before
    the last reinstatement). Revocation wins over suspension; each happens once.

    The ids returned are at most the threshold that tripped (the first, by id), and at
    most :data:`MAX_BREACH_ID_CHARS` characters in all: breaches met out of order can put
    more in the window, and ids come from a topic anyone may write to (up to 200
    characters each), while the action's event must stay far under the record limit.
    """
    policy = grant.breach_policy
    since = now.timestamp() - policy.window_seconds
    if grant.reinstated_at is not None:
        since = max(since, grant.reinstated_at.timestamp())
    counted = sorted(
        bid for bid, at in recent_critical if since < at.timestamp() <= now.timestamp()
    )
    if grant.lifecycle == "revoked":
        return None
    if policy.revoke_after_critical and len(counted) >= policy.revoke_after_critical:
        return "revoke", _within_budget(counted[: policy.revoke_after_critical])
    if (
        grant.lifecycle == "active"
        and policy.suspend_after_critical
        and len(counted) >= policy.suspend_after_critical
    ):
        return "suspend", _within_budget(counted[: policy.suspend_after_critical])
    return None


MAX_BREACH_ID_CHARS = 128 * 1024
"""The most characters of breach ids one policy action names (a quarter of the record
limit): 3,600 ids of the usual 36 characters, 650 of the longest allowed."""


def _within_budget(ids: list[str]) -> list[str]:
    kept: list[str] = []
    used = 0
    for breach_id in ids:
        used += len(breach_id) + 3  # its quotes and comma in the event's JSON
        if used > MAX_BREACH_ID_CHARS:
            break
        kept.append(breach_id)
    return kept


def window_start(happened: datetime, window_seconds: int) -> datetime:
    """Where the sliding window ending at ``happened`` starts, never before year 1.

    A breach may carry any date the contract admits (``0001-01-01`` included): the window
    is clamped rather than overflowing, so such a breach is counted like any other.
    """
    try:
        return happened - timedelta(seconds=window_seconds)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


ACTOR = "breach-policy"
"""Who a breach policy's action is by (the event's ``by`` or ``revoked_by``)."""
POLICY_EVENT_IDS = UUID("0e7f6a52-31c4-4b8e-9d0a-5c2b1e4f7a93")
"""The namespace of policy actions' event ids (``uuid5``, see :func:`policy_event_id`)."""


def policy_event_id(grant: Grant, action: PolicyAction) -> UUID:
    """The id of the event announcing ``action`` on ``grant``: derived from the grant and
    the version the action makes, so ordering it again cannot announce it twice."""
    return uuid5(POLICY_EVENT_IDS, f"{grant.grant_id}/{action}/{grant.version + 1}")


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """What a grant's breach policy orders, ready to record with the breach that tripped it."""

    action: PolicyAction
    tripped: PolicyTrip
    """The breaches that tripped it (at most its threshold), and its event's id."""
    reason: str
    change: GrantSuspended | CarveoutRevoked
    """The event announcing the action."""
    grant: Grant
    """The grant once the action is applied."""


def decide_breach_policy(
    grant: Grant,
    counted_critical: Sequence[tuple[str, datetime]],
    happened: datetime,
    now: datetime,
) -> PolicyDecision | None:
    """What ``grant``'s breach policy orders when a critical breach of it happened at
    ``happened``, or ``None``: suspension, revocation, or nothing.

    ``counted_critical`` are the grant's critical breaches (id, time) in the window ending
    at ``happened``, that breach included (see :func:`policy_action` for the counting).
    The action takes effect ``now``. Pure: the same inputs give the same decision, the
    event's id included.
    """
    ordered = policy_action(grant, counted_critical, happened)
    if ordered is None:
        return None
    action, breach_ids = ordered
    window = grant.breach_policy.window_seconds
    reason = f"breach policy: {len(breach_ids)} critical breaches within {window}s"
    tripped = PolicyTrip(breach_ids, policy_event_id(grant, action))
    change = (
        revoke_grant(grant, reason, by=ACTOR, now=now, tripped=tripped)
        if action == "revoke"
        else suspend(grant, reason, by=ACTOR, now=now, tripped=tripped)
    )
    return PolicyDecision(action, tripped, reason, change, apply(grant, change))
