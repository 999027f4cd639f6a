"""Rebuild the notification store from the log, and the digest that proves it matches.

Subscriptions are configuration, not events: they are carried over from the live store,
signing secrets included. Grant and breach events are folded by the live handler in the
order the log received them, which queues the same notifications with the same ids; the
outcomes come from ``carveout.notifications``. Nothing is delivered and nothing is
published: the rebuilt store has no delivery worker.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from carveout_contracts import (
    NotificationDelivered,
    PoisonMessage,
    codec,
    topics,
)
from carveout_contracts.digest import CoveredTable, store_digest
from carveout_contracts.logread import by_append_time, read_all
from carveout_contracts.replay import (
    Progress,
    ReplayReport,
    no_progress,
    require_fresh,
    since_ms,
)
from carveout_contracts.runtime import CURRENT_RECORD, make_engine

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
        why_not="attempts, schedule, errors and times (this copy's delivery work)",
    ),
    CoveredTable("processed_events", ("event_id", "topic"), why_not="processed_at"),
)


def digest(database_url: str) -> dict[str, Any]:
    engine = make_engine(database_url)
    try:
        return store_digest(engine, SERVICE, DIGEST_TABLES)
    finally:
        engine.dispose()


async def replay(
    *,
    bootstrap: str,
    database_url: str,
    source_database_url: str | None = None,
    since: datetime | None = None,
    progress: Progress = no_progress,
) -> ReplayReport:
    """Rebuild the store at ``database_url`` from the topics; deliver and publish nothing."""
    started = time.perf_counter()
    report = ReplayReport(SERVICE, database_url)
    engine = make_engine(database_url, rebuild=True)
    try:
        if since is None:
            require_fresh(engine, [t.name for t in DIGEST_TABLES])
        store = NotificationStore(engine)
        if source_database_url:
            source = make_engine(source_database_url)
            try:
                store.copy_subscriptions_from(source)
            finally:
                source.dispose()
        notifier = Notifier(store, retry_attempts=3)
        first = since_ms(since)

        records = by_append_time(
            await read_all(
                bootstrap,
                [topics.GRANTS, topics.BREACHES],
                lambda d, t: progress("grants and breaches", d, t),
            )
        )
        for record in records:
            report.records[record.topic] = report.records.get(record.topic, 0) + 1
            if first is not None and record.topic != topics.GRANTS and record.timestamp < first:
                report.skipped += 1
                continue
            try:
                event = codec.decode(record.topic, record.value)
            except PoisonMessage:
                report.poison += 1
                continue
            if store.is_processed(str(event.event_id)):
                report.skipped += 1
                continue
            token = CURRENT_RECORD.set(record)
            try:
                await notifier(event)
            finally:
                CURRENT_RECORD.reset(token)

        outcomes = await read_all(
            bootstrap, [topics.NOTIFICATIONS], lambda d, t: progress(topics.NOTIFICATIONS, d, t)
        )
        report.records[topics.NOTIFICATIONS] = len(outcomes)
        for record in outcomes:
            try:
                outcome = codec.decode(topics.NOTIFICATIONS, record.value)
            except PoisonMessage:
                report.poison += 1
                continue
            d = outcome.data
            delivered = isinstance(outcome, NotificationDelivered)
            if not store.record_outcome(
                d.notification_id,
                status="delivered" if delivered else "failed",
                attempts=d.attempts,
                at=d.delivered_at if delivered else d.failed_at,
                event=record.value.decode(),
            ):
                report.skipped += 1
        report.seconds = time.perf_counter() - started
        report.digest = store_digest(engine, SERVICE, DIGEST_TABLES)
        return report
    finally:
        engine.dispose()
