"""Rebuild the enforcement store from the log, and the digest that proves it matches.

The whole grants log is folded first (the projection keeps every version with the time
it took effect, and when the log received each grant), then every access is judged by
the same pipeline the live service runs, with nothing published: the breaches it finds
are already on ``carveout.breaches``.

"Now" is never the replay's own clock: an access's ``occurred_at`` is bounded by the time
the log received it (its record timestamp), as it was live, so an access accepted live is
accepted on replay however much later the replay runs, and one refused live is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Unpack

from carveout_contracts import topics
from carveout_runtime.digest import CoveredTable
from carveout_runtime.logread import read_topics
from carveout_runtime.replay import ReplayOptions, ReplayReport, StoreDigest, rebuilding
from carveout_runtime.tlog import TransparencyLogs

from .decision_log import DecisionLeaves, DecisionLog
from .freshness import WholeLogRead
from .handlers.access import AccessPipeline, PipelineSettings
from .handlers.grants import GrantIndex, GrantProjector
from .outbox import AlreadyPublished
from .settings import EnforcementSettings
from .store import EnforcementStore

SERVICE = "enforcement"

DIGEST_TABLES = (
    CoveredTable(
        "grant_views",
        ("grant_id", "carveout_id", "grantee_id", "model_id", "status", "version", "document"),
    ),
    CoveredTable(
        "decisions",
        (
            "access_event_id",
            "request_id",
            "grantee_id",
            "model_id",
            "grant_id",
            "grant_version",
            "decision",
            "violations",
            "occurred_at",
            "user_id",
            "gateway_id",
            "units",
            "log_partition",
            "leaf_index",
            "leaf_hash",
        ),
        why_not="judged_at (when this copy judged the access)",
    ),
    CoveredTable(
        "breaches",
        (
            "breach_id",
            "access_event_id",
            "grant_id",
            "grantee_id",
            "severity",
            "occurred_at",
            "payload",
        ),
        why_not="published_at (when this copy published it)",
    ),
    CoveredTable("usage", ("grant_id", "window", "window_start", "units")),
    CoveredTable("processed_events", ("event_id", "topic"), why_not="processed_at"),
)

digest = StoreDigest(SERVICE, DIGEST_TABLES)


async def replay(
    *,
    batch_records: int = 20_000,
    max_future_skew_s: float | None = None,
    **options: Unpack[ReplayOptions],
) -> ReplayReport:
    """Rebuild the store at ``database_url`` from the topics; publish nothing.

    ``max_future_skew_s`` defaults to the service's setting, so the replay holds accesses
    to the bound the live service held them to.
    """
    settings = EnforcementSettings()
    if max_future_skew_s is None:
        max_future_skew_s = settings.max_future_skew_seconds
    with rebuilding(SERVICE, DIGEST_TABLES, options) as rebuild:
        report = rebuild.report
        store = EnforcementStore(rebuild.engine)
        index = GrantIndex(list(store.load_grants()))
        projector = GrantProjector(store, index, retry_attempts=3)
        await rebuild.fold([topics.GRANTS], is_processed=store.is_processed, process=projector)

        async def count_poison(_record: Any, _reason: str, _error: str) -> None:
            report.poison += 1

        # The decision logs as the live service keeps them (a --since replay goes on from
        # the leaves its restored copy holds): the same leaves, the same trees.
        logs = TransparencyLogs(DecisionLeaves(rebuild.engine))
        logs.load()
        pipeline = AccessPipeline(
            store,
            index,
            WholeLogRead(),
            store.load_usage(0),
            breaches=AlreadyPublished(),
            set_aside=count_poison,
            settings=PipelineSettings(
                retry_attempts=3,
                max_future_skew_s=max_future_skew_s,
                record_max_bytes=settings.record_max_bytes,  # as live: the same too large
            ),
            decision_log=DecisionLog(logs) if settings.decision_log else None,
        )
        report.records[topics.ACCESS] = 0
        first = rebuild.first_ms
        async for batch in read_topics(
            rebuild.bootstrap,
            [topics.ACCESS],
            batch_records=batch_records,
            on_progress=lambda d, t: rebuild.progress(topics.ACCESS, d, t),
        ):
            report.records[topics.ACCESS] += len(batch)
            if first is not None:
                kept = [r for r in batch if r.timestamp >= first]
                report.skipped += len(batch) - len(kept)
                batch = kept
            await pipeline.process(batch)
        report.skipped += pipeline.duplicates
        # The breaches found are those the live service published: the log has them.
        store.mark_all_breaches_published(datetime.now(UTC))
    return report
