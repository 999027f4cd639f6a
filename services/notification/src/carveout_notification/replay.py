"""Rebuild the notification store from the log, and the digest that proves it matches.

Subscriptions are configuration, not events: they are carried over from the live store,
signing secrets included. Grant and breach events are folded by the live handler in the
order the log received them, which queues the same notifications with the same ids; the
outcomes come from ``carveout.notifications``. Nothing is delivered and nothing is
published: the rebuilt store has no delivery worker.
"""

from __future__ import annotations

from typing import Any, Unpack

from carveout_contracts import NotificationDelivered, topics
from carveout_runtime.digest import CoveredTable
from carveout_runtime.inbound import Inbound
from carveout_runtime.replay import ReplayOptions, ReplayReport, StoreDigest, rebuilding
from carveout_runtime.stores import make_engine

from .handlers.grants import Notifier
from .store import NotificationStore

SERVICE = "notification"

DIGEST_TABLES = (
    CoveredTable("grant_contacts", ("grant_id", "grantee_id", "status", "version", "document")),
    CoveredTable(
        "subscriptions",
        ("subscription_id", "grantee_id", "grant_id", "created_at", "document"),
        why_not="nothing: configuration, carried over from the live store by a replay",
    ),
    CoveredTable(
        "notifications",
        (
            "notification_id",
            "subscription_id",
            "event_id",
            "event_type",
            "channel",
            "address",
            "payload",
            "status",
        ),
        why_not="attempts, schedule, errors, times and claims (this copy's delivery work: "
        "which replica works on a notification now is runtime state, a rebuild has none)",
    ),
    CoveredTable("processed_events", ("event_id", "topic"), why_not="processed_at"),
)

digest = StoreDigest(SERVICE, DIGEST_TABLES)


async def replay(
    *, source_database_url: str | None = None, **options: Unpack[ReplayOptions]
) -> ReplayReport:
    """Rebuild the store at ``database_url`` from the topics; deliver and publish nothing.
    The subscriptions are carried over from the store at ``source_database_url``."""
    with rebuilding(SERVICE, DIGEST_TABLES, options) as rebuild:
        report = rebuild.report
        store = NotificationStore(rebuild.engine)
        if source_database_url:
            source = make_engine(source_database_url)
            try:
                store.copy_subscriptions_from(source)
            finally:
                source.dispose()
        notifier = Notifier(store, retry_attempts=3)

        async def record_outcome(outcome: Any, inbound: Inbound) -> None:
            d = outcome.data
            delivered = isinstance(outcome, NotificationDelivered)
            if not store.record_outcome(
                d.notification_id,
                status="delivered" if delivered else "failed",
                attempts=d.attempts,
                at=d.delivered_at if delivered else d.failed_at,
                event=inbound.value.decode(),
            ):
                report.skipped += 1  # its notification is not in this rebuild

        await rebuild.fold(
            [topics.GRANTS, topics.BREACHES],
            is_processed=store.is_processed,
            process=notifier,
            first_ms=rebuild.first_ms,
        )
        await rebuild.fold(
            [topics.NOTIFICATIONS],
            is_processed=lambda _event_id: False,
            process=record_outcome,
        )
    return report
