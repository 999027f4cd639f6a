"""What every service's replay shares: its report, progress, and the fresh-store check.

A replay rebuilds one service's store from the topics into a database of the operator's
choosing, side-effect free: it creates no producer, sends nothing and publishes nothing.
Each service's ``replay`` module folds the log with the same projection code its live
handlers use: its ``replay(**options)`` takes the :class:`ReplayOptions` and works in a
:func:`rebuilding` block, and its ``digest`` is a :class:`StoreDigest`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Required, TypedDict

from sqlalchemy import Engine, inspect

from carveout_contracts import codec, topics

from .consumers import Process, too_large
from .digest import CoveredTable, store_digest
from .event_signing import EventSigning
from .inbound import Inbound
from .settings import SharedSettings
from .stores import make_engine

Progress = Callable[[str, int, int], None]
"""``(what is being read, records done, records in all)``."""


def no_progress(_what: str, _done: int, _total: int) -> None:
    return None


@dataclass
class ReplayReport:
    service: str
    database_url: str
    records: dict[str, int] = field(default_factory=dict)
    """Records read, by topic."""
    poison: int = 0
    """Records that do not decode (the live service dead-lettered them too)."""
    skipped: int = 0
    """Records before ``--since``, or already in the target store."""
    seconds: float = 0.0
    digest: dict[str, Any] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(self.records.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "database_url": self.database_url,
            "records": self.records,
            "events": self.events,
            "poison": self.poison,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events / self.seconds) if self.seconds else None,
            "digest": self.digest["digest"],
            "tables": self.digest["tables"],
        }


class NotAFreshStore(Exception):
    """A replay's target database already holds rows of the service's tables."""


def require_fresh(engine: Engine, tables: Sequence[str]) -> None:
    """Refuse to replay over a store that already has data (unless ``--since`` is given)."""
    present = set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        for table in tables:
            if (
                table in present
                and connection.exec_driver_sql(f"SELECT 1 FROM {table} LIMIT 1").first()
            ):
                raise NotAFreshStore(
                    f"the target database already has rows in {table!r}: replay rebuilds into "
                    "a fresh database (give another --database-url), or pass --since to "
                    "catch up a restored copy"
                )


def since_ms(moment: datetime | None) -> int | None:
    """``--since`` as a record timestamp (epoch milliseconds)."""
    return None if moment is None else int(moment.timestamp() * 1000)


async def fold(
    records: Iterable[Any],
    report: ReplayReport,
    *,
    is_processed: Callable[[str], bool],
    process: Process,
    first_ms: int | None = None,
    record_max_bytes: int | None = None,
    signatures: EventSigning | None = None,
) -> None:
    """Decode each record and hand it to ``process(event, inbound)``, as a live consumer would.

    Poison is counted (the live consumer dead-lettered it: a record over
    ``record_max_bytes``, by default the setting in force, too), events already in the
    store are skipped, and so are records the log received before ``first_ms`` (grant
    events excepted: they are always folded whole). A record of a signed topic whose
    signature the trusted keys (by default ``CARVEOUT_TRUSTED_KEYS``) refuse is poison too.
    """
    if record_max_bytes is None or signatures is None:
        settings = SharedSettings()
        record_max_bytes = record_max_bytes or settings.record_max_bytes
        signatures = signatures or EventSigning.of("replay", None, settings.trusted_keys)
    for record in records:
        report.records[record.topic] = report.records.get(record.topic, 0) + 1
        if first_ms is not None and record.topic != topics.GRANTS and record.timestamp < first_ms:
            report.skipped += 1
            continue
        if too_large(record.value, record_max_bytes) or (
            signatures is not None
            and signatures.refusal(record.topic, record.value, record.headers) is not None
        ):
            report.poison += 1  # dead-lettered live too: it is not part of any log
            continue
        try:
            event = codec.decode(record.topic, record.value)
        except Exception:  # poison, or unreadable otherwise: the live consumer set it aside
            report.poison += 1
            continue
        if is_processed(str(event.event_id)):
            report.skipped += 1
            continue
        await process(event, Inbound.of(record))


async def fold_topics(
    bootstrap: str,
    topic_names: Sequence[str],
    report: ReplayReport,
    progress: Progress,
    *,
    is_processed: Callable[[str], bool],
    process: Process,
    first_ms: int | None = None,
    signatures: EventSigning | None = None,
) -> None:
    """Read ``topic_names`` whole and :func:`fold` them in the order the log received them
    (what a live consumer of them all would have seen), showing progress as ``what``."""
    from .logread import by_append_time, read_all

    what = (
        topic_names[0]
        if len(topic_names) == 1
        else " and ".join(name.removeprefix("carveout.") for name in topic_names)
    )
    records = await read_all(
        bootstrap, topic_names, lambda done, total: progress(what, done, total)
    )
    await fold(
        by_append_time(records),
        report,
        is_processed=is_processed,
        process=process,
        first_ms=first_ms,
        signatures=signatures,
    )


def open_target(
    database_url: str, since: datetime | None, tables: Sequence[CoveredTable]
) -> Engine:
    """The replay's target store, refused when it holds data and ``since`` is not given."""
    engine = make_engine(database_url, rebuild=True)
    if since is None:
        try:
            require_fresh(engine, [t.name for t in tables])
        except NotAFreshStore:
            engine.dispose()
            raise
    return engine


def finish(
    report: ReplayReport, engine: Engine, tables: Sequence[CoveredTable], started: float
) -> ReplayReport:
    """Time the replay and digest what it built."""
    report.seconds = time.perf_counter() - started
    report.digest = store_digest(engine, report.service, tables)
    return report


class ReplayOptions(TypedDict, total=False):
    """What every service's ``replay`` takes, by keyword (as ``carveout replay`` passes it)."""

    bootstrap: Required[str]
    """The broker whose topics are read."""
    database_url: Required[str]
    """Where to rebuild: a fresh database, or a restored copy when ``since`` is given."""
    since: datetime | None
    """Skip the records the log received before this time (grant events excepted)."""
    progress: Progress


@dataclass(frozen=True)
class Rebuild:
    """A replay under way: its report, its target store, and the log it reads."""

    report: ReplayReport
    engine: Engine
    bootstrap: str
    progress: Progress
    first_ms: int | None
    """``since`` as a record timestamp (see :func:`since_ms`)."""

    async def fold(
        self,
        topic_names: Sequence[str],
        *,
        is_processed: Callable[[str], bool],
        process: Process,
        first_ms: int | None = None,
    ) -> None:
        """:func:`fold_topics` over this replay's log, counted in its report."""
        await fold_topics(
            self.bootstrap,
            topic_names,
            self.report,
            self.progress,
            is_processed=is_processed,
            process=process,
            first_ms=first_ms,
        )


@contextlib.contextmanager
def rebuilding(
    service: str, tables: Sequence[CoveredTable], options: ReplayOptions
) -> Iterator[Rebuild]:
    """A replay's report and target store; timed and digested when the block completes."""
    started = time.perf_counter()
    database_url, since = options["database_url"], options.get("since")
    report = ReplayReport(service, database_url)
    engine = open_target(database_url, since, tables)
    try:
        yield Rebuild(
            report,
            engine,
            options["bootstrap"],
            options.get("progress", no_progress),
            since_ms(since),
        )
        finish(report, engine, tables, started)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class StoreDigest:
    """``digest(database_url)``: the digest of one service's store, over the tables it covers."""

    service: str
    tables: Sequence[CoveredTable]

    def __call__(self, database_url: str) -> dict[str, Any]:
        engine = make_engine(database_url)
        try:
            return store_digest(engine, self.service, self.tables)
        finally:
            engine.dispose()
