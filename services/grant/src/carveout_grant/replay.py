"""Rebuild the grant store from the log, and the digest that proves it matches.

Every grant is the fold of its events (:func:`domain.apply`), and every event the grant
service recorded is on ``carveout.grants``, breach-policy actions included: a replay
folds them back, recording each event as published, then counts the breaches of
``carveout.breaches`` as the breach policy does, without acting on them (their actions
are already in the grants log).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from carveout_contracts import CarveoutRevoked, GrantIssued, PoisonMessage, codec, topics
from carveout_contracts.digest import CoveredTable, store_digest
from carveout_contracts.logread import by_append_time, read_all
from carveout_contracts.replay import (
    Progress,
    ReplayReport,
    no_progress,
    require_fresh,
    since_ms,
)
from carveout_contracts.runtime import make_engine

from .domain import Grant, apply
from .handlers.breaches import counted_breach
from .store import GrantStore

SERVICE = "grant"

DIGEST_TABLES = (
    CoveredTable(
        "grants",
        (
            "grant_id",
            "carveout_id",
            "grantee_id",
            "model_id",
            "lifecycle",
            "version",
            "valid_until",
            "updated_at",
            "document",
        ),
    ),
    CoveredTable(
        "grant_events",
        ("event_id", "grant_id", "type", "topic", "key", "payload", "created_at"),
        why_not="seq, traceparent, published_at (this copy's outbox bookkeeping)",
    ),
    CoveredTable("policy_breaches", ("breach_id", "grant_id", "occurred_at")),
    CoveredTable("processed_events", ("event_id", "topic"), why_not="processed_at"),
)


def digest(database_url: str) -> dict[str, Any]:
    engine = make_engine(database_url)
    try:
        return store_digest(engine, SERVICE, DIGEST_TABLES)
    finally:
        engine.dispose()


def _traceparent(record: Any) -> str | None:
    for name, value in record.headers or ():
        if name == "traceparent":
            return bytes(value).decode()
    return None


async def replay(
    *,
    bootstrap: str,
    database_url: str,
    since: datetime | None = None,
    progress: Progress = no_progress,
) -> ReplayReport:
    """Rebuild the store at ``database_url`` from the topics; publish nothing."""
    started = time.perf_counter()
    report = ReplayReport(SERVICE, database_url)
    engine = make_engine(database_url, rebuild=True)
    try:
        if since is None:
            require_fresh(engine, [t.name for t in DIGEST_TABLES])
        store = GrantStore(engine)

        grant_records = by_append_time(
            await read_all(bootstrap, [topics.GRANTS], lambda d, t: progress(topics.GRANTS, d, t))
        )
        report.records[topics.GRANTS] = len(grant_records)
        for record in grant_records:
            try:
                event = codec.decode(topics.GRANTS, record.value)
            except PoisonMessage:
                report.poison += 1
                continue
            if store.has_event(str(event.event_id)):
                report.skipped += 1  # a repeat (the history re-published after a restart)
                continue
            if isinstance(event, GrantIssued):
                changed: list[Grant] = [apply(None, event)]
            else:
                ids = (
                    event.data.grant_ids
                    if isinstance(event, CarveoutRevoked)
                    else [event.data.grant_id]
                )
                before = [store.get(grant_id) for grant_id in ids]
                if any(grant is None for grant in before):
                    report.skipped += 1  # its grant's issue is not in this log
                    continue
                changed = [apply(grant, event) for grant in before if grant is not None]
            store.record_from_log(changed, event, record.value.decode(), _traceparent(record))

        breach_records = await read_all(
            bootstrap, [topics.BREACHES], lambda d, t: progress(topics.BREACHES, d, t)
        )
        report.records[topics.BREACHES] = len(breach_records)
        first = since_ms(since)
        for record in breach_records:
            if first is not None and record.timestamp < first:
                report.skipped += 1
                continue
            try:
                breach = codec.decode(topics.BREACHES, record.value)
            except PoisonMessage:
                report.poison += 1
                continue
            if store.is_processed(str(breach.event_id)):
                report.skipped += 1
                continue
            store.record_breach(
                event_id=str(breach.event_id),
                topic=topics.BREACHES,
                breach=counted_breach(breach),
                action=None,
                at=datetime.now(UTC),
            )
        report.seconds = time.perf_counter() - started
        report.digest = store_digest(engine, SERVICE, DIGEST_TABLES)
        return report
    finally:
        engine.dispose()
