"""Rebuild the grant store from the log, and the digest that proves it matches.

Every grant is the fold of its events (:func:`domain.apply`), and every event the grant
service recorded is on ``carveout.grants``, breach-policy actions included: a replay
folds them back, recording each event as published, then counts the breaches of
``carveout.breaches`` as the breach policy does, without acting on them (their actions
are already in the grants log).
"""

from __future__ import annotations

from typing import Any, Unpack

from carveout_contracts import GrantIssued, affected_grants, topics
from carveout_runtime.digest import CoveredTable
from carveout_runtime.inbound import Inbound
from carveout_runtime.replay import ReplayOptions, ReplayReport, StoreDigest, rebuilding

from .clock import Clock, system_clock
from .domain import Grant, apply
from .handlers.breaches import counted_breach
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
        why_not="seq, traceparent, published_at (this copy's outbox bookkeeping)",
    ),
    CoveredTable("policy_breaches", ("breach_id", "grant_id", "occurred_at")),
    CoveredTable("processed_events", ("event_id", "topic"), why_not="processed_at"),
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
            store.record_from_log(change, inbound.value.decode(), published_at=clock())

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
    return report
