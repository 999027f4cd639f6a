"""Rebuild the grant store from the log, and the digest that proves it matches.

Every grant is the fold of its events (:func:`domain.apply`), and every event the grant
service recorded is on ``carveout.grants``, breach-policy actions included: a replay
folds them back, recording each event as published, then counts the breaches of
``carveout.breaches`` as the breach policy does, without acting on them (their actions
are already in the grants log), and keeps enforcement's acknowledgements and heartbeats
as the live consumer of ``carveout.acks`` does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Unpack

from carveout_contracts import GrantIssued, affected_grants, topics
from carveout_runtime.digest import CoveredTable
from carveout_runtime.inbound import Inbound
from carveout_runtime.replay import ReplayOptions, ReplayReport, StoreDigest, rebuilding

from .acks_store import AckStore
from .clock import Clock, system_clock
from .domain import Grant, apply
from .handlers.acks import AckFolder, never_processed
from .handlers.breaches import counted_breach
from .propagation import LogPosition
from .store import GrantChange, GrantStore

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
        why_not="seq, traceparent, published_at (this copy's outbox bookkeeping); "
        "log_partition, log_offset, appended_at (where this copy's relay saw the log take "
        "each event: the same log, but the time is the broker's only where it stamps "
        "LogAppendTime)",
    ),
    CoveredTable("policy_breaches", ("breach_id", "grant_id", "occurred_at")),
    CoveredTable("processed_events", ("event_id", "topic"), why_not="processed_at"),
    CoveredTable(
        "enforcement_acks",
        ("enforcer_id", "grant_id", "version", "applied_at", "grant_event_id"),
        why_not="enforcer_heartbeats, the table beside it: each enforcer's last heartbeat "
        "is its liveness at this moment, not history",
    ),
)

digest = StoreDigest(SERVICE, DIGEST_TABLES)


async def replay(*, clock: Clock = system_clock, **options: Unpack[ReplayOptions]) -> ReplayReport:
    """Rebuild the store at ``database_url`` from the topics; publish nothing. ``clock``
    stamps the outbox's rows as published and the breaches as processed."""
    with rebuilding(SERVICE, DIGEST_TABLES, options) as rebuild:
        report = rebuild.report
        store = GrantStore(rebuild.engine)

        async def fold_grant_event(event: Any, inbound: Inbound) -> None:
            if isinstance(event, GrantIssued):
                changed: list[Grant] = [apply(None, event)]
            else:
                before = [store.get(grant_id) for grant_id in affected_grants(event)]
                if any(grant is None for grant in before):
                    report.skipped += 1  # its grant's issue is not in this log
                    return
                changed = [apply(grant, event) for grant in before if grant is not None]
            change = GrantChange(changed, event, inbound.traceparent)
            position = None
            if inbound.appended_ms is not None:
                appended = datetime.fromtimestamp(inbound.appended_ms / 1000, UTC)
                position = LogPosition(inbound.partition, inbound.offset, appended)
            store.record_from_log(change, inbound.value.decode(), clock(), position)

        async def count_breach(breach: Any, _inbound: Inbound) -> None:
            store.record_breach(breach, counted_breach(breach), None, at=clock())

        await rebuild.fold(
            [topics.GRANTS],
            is_processed=store.has_event,  # a repeat: the history re-published after a restart
            process=fold_grant_event,
        )
        await rebuild.fold(
            [topics.BREACHES],
            is_processed=store.is_processed,
            process=count_breach,
            first_ms=rebuild.first_ms,
        )
        await rebuild.fold(
            [topics.ACKS],
            is_processed=never_processed,
            process=AckFolder(AckStore(rebuild.engine), clock=clock),
            first_ms=rebuild.first_ms,
        )
    return report
