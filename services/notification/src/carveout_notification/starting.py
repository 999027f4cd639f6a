"""Which due notifications a delivery round starts: chosen within each receiver's share,
claimed in the store, then loaded whole (payloads) only for those this replica won."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from .domain import Subscription
from .held import HeldClaims
from .store import NotificationRecord, NotificationStore
from .webhooks import within_shares


@dataclass(frozen=True, slots=True)
class Starts:
    """What a round may start, and whether anything was due at all."""

    notifications: list[NotificationRecord]
    subscriptions: dict[str, Subscription]
    any_due: bool


def take_due(
    store: NotificationStore,
    claims: HeldClaims,
    now: datetime,
    room: int,
    busy: Collection[str],
    in_flight_by_receiver: Mapping[str, int],
    share: int,
) -> Starts:
    """Claim up to ``room`` of the notifications due at ``now`` (not ``busy`` here), at most
    ``share`` in flight per webhook host; the won ones, whole, with their subscriptions."""
    # More than there is room for: some may be for a host that is at its share.
    due = store.due_heads(now, limit=min(8 * room, 1000), exclude=busy)
    ids = [n.notification_id for n in within_shares(due, room, in_flight_by_receiver, share)]
    won = claims.claim(ids)
    try:
        notifications = store.rows([n for n in ids if n in won])
        wanted = {n.subscription_id for n in notifications}
        found = store.subscriptions(wanted) if wanted else []
    except Exception:
        # Not started: not held either, or renewing them would keep them from everyone.
        claims.ended(won)
        with contextlib.suppress(Exception):
            claims.release(won)
        raise
    return Starts(notifications, {s.subscription_id: s for s in found}, any_due=bool(due))
