"""The enforcement store: the grant projection and the processed-event marks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
from msgspec.structs import astuple
from sqlalchemy import BigInteger, Connection, Engine, Index, LargeBinary, func, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col, select

from carveout_contracts.common import iso_utc as iso
from carveout_runtime.service_store import GrantKeyColumns, ProcessedEventColumns, ServiceStore
from carveout_runtime.tlog import CheckpointColumns

from .domain import GrantView
from .rows import BreachRow, DecisionRow, UsageRow


class EnforcementTable(SQLModel, registry=registry()):
    """Base of this service's tables, with metadata of its own (no other store shares it)."""


class GrantViewRecord(GrantKeyColumns, EnforcementTable, table=True):
    __tablename__ = "grant_views"

    status: str
    version: int
    updated_at: str
    document: str


class DecisionRecord(EnforcementTable, table=True):
    """One judged access. Its primary key is also the access event's processed mark."""

    __tablename__ = "decisions"
    # Two composite indexes serve the listings; each more index costs every insert.
    __table_args__ = (
        Index("ix_decisions_grantee_time", "grantee_id", "occurred_at"),
        Index("ix_decisions_grant_time", "grant_id", "occurred_at"),
        # A leaf's place in its log: unique, so two writers can never take the same one.
        # In the decision's own row rather than a table of its own, which would cost every
        # insert a second row and an index keyed by random event ids (twice the writes).
        Index("ux_decisions_leaf", "log_partition", "leaf_index", unique=True),
    )

    access_event_id: str = Field(primary_key=True)
    request_id: str
    grantee_id: str
    model_id: str
    grant_id: str | None = None
    grant_version: int | None = None
    decision: str
    violations: str
    occurred_at: int = Field(sa_type=BigInteger, description="Epoch microseconds (UTC).")
    judged_at: int = Field(sa_type=BigInteger, description="Epoch microseconds (UTC).")
    user_id: str
    gateway_id: str
    units: int
    log_partition: int | None = None
    """The decision log holding this decision: ``carveout.decisions/<log_partition>``."""
    leaf_index: int | None = Field(default=None, sa_type=BigInteger)
    leaf_hash: bytes | None = Field(default=None, sa_type=LargeBinary)
    """Its leaf's RFC 6962 hash, 32 bytes (half what hex text would add to every row)."""


class BreachRecord(EnforcementTable, table=True):
    """A breach and its ``condition.breached`` event, published after the commit (outbox)."""

    __tablename__ = "breaches"

    breach_id: str = Field(primary_key=True)
    access_event_id: str = Field(index=True)
    grant_id: str | None = Field(default=None, index=True)
    grantee_id: str = Field(index=True)
    severity: str
    occurred_at: int = Field(sa_type=BigInteger, index=True, description="Epoch microseconds.")
    payload: str
    published_at: str | None = Field(default=None, index=True)
    traceparent: str | None = None
    """The access record's W3C ``traceparent``: the breach event continues its trace."""


class UsageRecord(EnforcementTable, table=True):
    """Units used by a grant in one UTC-aligned hour or day."""

    __tablename__ = "usage"

    grant_id: str = Field(primary_key=True)
    window: str = Field(primary_key=True)
    window_start: int = Field(primary_key=True)
    units: int


class AccessPartitionOwner(EnforcementTable, table=True):
    """Which replica judges an access partition, and since which claim (its epoch): a
    batch is recorded only by the replica whose claim is the latest (:mod:`.ownership`).
    Runtime state, not derived from events: no digest covers it."""

    __tablename__ = "access_partition_owners"

    log_partition: int = Field(primary_key=True, sa_type=BigInteger)
    owner: str
    epoch: int = Field(sa_type=BigInteger)
    claimed_at: str


class ProcessedEvent(ProcessedEventColumns, EnforcementTable, table=True):
    __tablename__ = "processed_events"


class DecisionCheckpoint(CheckpointColumns, EnforcementTable, table=True):
    """A signed checkpoint of a decision log."""

    __tablename__ = "checkpoints"


class EnforcementStore(ServiceStore):
    tables = EnforcementTable
    processed_events = ProcessedEvent

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        copy = engine.dialect.name == "postgresql"
        self._decisions = _BulkInsert.of(DecisionRow, DecisionRecord, mark, copy=copy)
        self._breaches = _BulkInsert.of(BreachRow, BreachRecord, mark, copy=copy)
        self._usage = _BulkInsert.of(
            UsageRow, UsageRecord, mark, upsert_key=("grant_id", "window", "window_start")
        )

    def save_grants(
        self, views: Sequence[GrantView], *, event_id: str, topic: str, at: datetime
    ) -> None:
        """Store the changed views and mark the event processed, in one transaction.

        Upserts: every replica sharing this store folds the same events into the same
        views, and marks them, at about the same time."""
        insert = _dialect_insert(self.engine)
        with self.engine.begin() as connection:
            for view in views:
                # The view fills the columns named after its fields; these two are text.
                as_text = {"updated_at": iso(view.updated_at), "document": view.model_dump_json()}
                row = GrantViewRecord.model_validate(view, update=as_text).model_dump()
                statement = insert(GrantViewRecord).values(**row)
                connection.execute(
                    statement.on_conflict_do_update(
                        index_elements=["grant_id"],
                        set_={k: v for k, v in row.items() if k != "grant_id"},
                    )
                )
            mark = {"event_id": event_id, "topic": topic, "processed_at": iso(at)}
            connection.execute(insert(ProcessedEvent).values(**mark).on_conflict_do_nothing())

    def load_grants(self) -> Iterable[GrantView]:
        with Session(self.engine) as session:
            for row in session.exec(select(GrantViewRecord)):
                yield GrantView.model_validate_json(row.document)

    # ----------------------------------------------------------------- judged accesses

    def decided(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these access events already have a decision (one query per batch)."""
        if not event_ids:
            return set()
        if self.engine.dialect.name == "sqlite":
            sql = (
                "SELECT access_event_id FROM decisions "
                "WHERE access_event_id IN (SELECT value FROM json_each(?))"
            )
            param: Any = (orjson.dumps(list(event_ids)).decode(),)
        else:
            sql = "SELECT access_event_id FROM decisions WHERE access_event_id = ANY(%s)"
            param = (list(event_ids),)
        with self.engine.connect() as connection:
            return {row[0] for row in connection.exec_driver_sql(sql, param)}

    def record_judgements(
        self,
        decisions: Sequence[DecisionRow],
        breaches: Sequence[BreachRow],
        usage: Mapping[tuple[str, str, int], int],
        place: Callable[[Connection], Sequence[DecisionRow]] | None = None,
        fence: Callable[[Connection], None] | None = None,
    ) -> None:
        """Decisions, breaches and the new usage totals of one batch, in one transaction.

        ``place`` gives the decisions their leaves in the decision logs, from the logs'
        sizes as this transaction reads them (``DecisionLog.prepare``), so the logs and
        the decisions are written together. ``fence`` raises when another replica has
        claimed a partition of the batch since this one did (:mod:`.ownership`): first, so
        that a claim waits for this transaction. Rows go straight to the driver (``COPY``
        on PostgreSQL, ``executemany`` on SQLite): the batch is the hot path.
        """
        with self.engine.begin() as connection:
            if fence is not None:
                fence(connection)
            if place is not None:
                decisions = place(connection)
            if decisions:
                self._decisions.write(connection, decisions)
            if breaches:
                self._breaches.write(connection, breaches)
            if usage:
                totals = [
                    UsageRow(grant_id=grant_id, window=window, window_start=start, units=units)
                    for (grant_id, window, start), units in usage.items()
                ]
                self._usage.write(connection, totals)

    def load_usage(self, since_window_start: int) -> dict[tuple[str, str, int], int]:
        with Session(self.engine) as session:
            rows = session.exec(
                select(UsageRecord).where(UsageRecord.window_start >= since_window_start)
            )
            return {(r.grant_id, r.window, r.window_start): r.units for r in rows}

    def unpublished_breaches(self, limit: int = 1000) -> list[BreachRow]:
        """Breaches recorded and not yet published, oldest first."""
        with Session(self.engine) as session:
            found = session.exec(
                select(BreachRecord)
                .where(col(BreachRecord.published_at).is_(None))
                .order_by(col(BreachRecord.occurred_at))
                .limit(limit)
            )
            return [BreachRow(**record.model_dump()) for record in found]

    def mark_breaches_published(self, breach_ids: Sequence[str], at: datetime) -> None:
        with Session(self.engine) as session:
            session.execute(
                update(BreachRecord)
                .where(col(BreachRecord.breach_id).in_(breach_ids))
                .values(published_at=iso(at))
            )
            session.commit()

    def mark_all_breaches_unpublished(self) -> int:
        """Every breach to be published again (the topic restarted empty)."""
        with Session(self.engine) as session:
            result = session.execute(
                update(BreachRecord)
                .where(col(BreachRecord.published_at).is_not(None))
                .values(published_at=None)
            )
            session.commit()
            return int(result.rowcount)  # type: ignore[attr-defined]

    def mark_all_breaches_published(self, at: datetime) -> int:
        with Session(self.engine) as session:
            result = session.execute(
                update(BreachRecord)
                .where(col(BreachRecord.published_at).is_(None))
                .values(published_at=iso(at))
            )
            session.commit()
            return int(result.rowcount)  # type: ignore[attr-defined]

    def page(
        self,
        table: type[DecisionRecord] | type[BreachRecord],
        *,
        grantee_id: str | None = None,
        grant_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page:
        """A page of rows, newest first, by grantee, grant and time range when given."""
        query = select(table)
        if grantee_id:
            query = query.where(table.grantee_id == grantee_id)
        if grant_id:
            query = query.where(table.grant_id == grant_id)
        if since:
            query = query.where(table.occurred_at >= micros(since))
        if until:
            query = query.where(table.occurred_at < micros(until))
        with Session(self.engine) as session:
            total = session.exec(select(func.count()).select_from(query.subquery())).one()
            rows = session.exec(
                query.order_by(col(table.occurred_at).desc()).offset(offset).limit(limit)
            ).all()
        return Page(list(rows), int(total))


def _dialect_insert(engine: Engine) -> Any:
    """The ``INSERT`` with ``ON CONFLICT`` of the store's database."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def micros(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


def from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def _quoted(column: str) -> str:
    return f'"{column}"'


@dataclass(frozen=True)
class _BulkInsert:
    """A positional ``INSERT`` (or upsert) of typed rows: PostgreSQL's ``COPY`` for plain
    inserts there, the driver's ``executemany`` otherwise.

    Its columns are the row type's fields, in their order, so a row's values always land
    in the columns that bear their names. ``COPY ... FROM STDIN`` sends a batch as one
    stream: a third of the client's CPU per row of psycopg's pipelined ``executemany``,
    with the same effects (a conflicting row fails the whole statement, and so the
    transaction, as an insert would). An upsert has no ``COPY``: it stays an ``executemany``.
    """

    sql: str
    copy_sql: str | None = None

    @classmethod
    def of(
        cls,
        row: type[msgspec.Struct],
        table: Any,
        mark: str,
        upsert_key: tuple[str, ...] | None = None,
        *,
        copy: bool = False,
    ) -> _BulkInsert:
        columns = row.__struct_fields__
        if set(columns) != {c.name for c in table.__table__.columns}:
            raise TypeError(f"{row.__name__} does not have the columns of {table.__tablename__}")
        # Quoted: some column names (``window``) are reserved words in PostgreSQL.
        names = ", ".join(_quoted(c) for c in columns)
        sql = (
            f"INSERT INTO {table.__tablename__} ({names}) "
            f"VALUES ({', '.join([mark] * len(columns))})"
        )
        if upsert_key:
            rest = [c for c in columns if c not in upsert_key]
            sql += (
                f" ON CONFLICT ({', '.join(_quoted(c) for c in upsert_key)})"
                " DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in rest)
            )
        copy_sql = f"COPY {table.__tablename__} ({names}) FROM STDIN" if copy else None
        return cls(sql, None if upsert_key else copy_sql)

    def write(self, connection: Connection, rows: Sequence[msgspec.Struct]) -> None:
        if self.copy_sql is not None:
            self._copy(connection, rows)
            return
        # A plain tuple each: what the driver binds fastest (built in C, ~50 ns a row).
        connection.exec_driver_sql(self.sql, list(map(astuple, rows)))

    def _copy(self, connection: Connection, rows: Sequence[msgspec.Struct]) -> None:
        """The rows through psycopg's ``COPY``, in the connection's transaction. Its errors
        reach callers as SQLAlchemy's, as ``exec_driver_sql``'s do (a lost connection
        invalidated and reported as such): what the retries tell apart."""
        fairy, dialect = connection.connection, connection.dialect
        raw = fairy.driver_connection
        assert raw is not None
        try:
            with raw.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
                for row in rows:
                    copy.write_row(astuple(row))
        except dialect.loaded_dbapi.Error as error:
            lost = dialect.is_disconnect(error, fairy.dbapi_connection, None)
            if lost:
                connection.invalidate(error)
            raise sa_exc.DBAPIError.instance(
                self.copy_sql,
                None,
                error,
                dialect.loaded_dbapi.Error,
                hide_parameters=True,
                dialect=dialect,
                connection_invalidated=lost,
            ) from error


@dataclass(frozen=True)
class Page:
    items: list[Any]
    total: int
