"""Store engines: SQLite (one file, owner-only) or PostgreSQL by URL, and the columns a
newer release adds to an existing store."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine


def _owner_only(db: Path) -> None:
    """The store holds every grant, decision and webhook secret: readable by its owner only.

    The file is made 0600 before SQLite opens it, so SQLite gives its ``-wal`` and ``-shm``
    files the same mode; files left by an older version are narrowed too.
    """
    import os

    os.close(os.open(db, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            file.chmod(0o600)


def make_engine(url: str, *, rebuild: bool = False) -> Engine:
    """A SQLAlchemy engine for a store URL: SQLite (WAL, one file) or PostgreSQL (psycopg 3).

    ``rebuild``: the store is being rebuilt from the log (a replay), so SQLite need not
    sync to disk on every commit; a crash means replaying again, never a lost fact.
    """
    from sqlalchemy import create_engine, event

    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    path = url.removeprefix("sqlite:///")
    if url.startswith("sqlite:///") and path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _owner_only(Path(path))
    # Errors never show the statement's values (a subscription's signing secret, say): their
    # text reaches logs and dead letters.
    engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=OFF" if rebuild else "PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        # Checkpoint the WAL every ~80 MB rather than every 4 MB: hot index pages are then
        # copied once per checkpoint instead of once per commit (a third of the write cost).
        cursor.execute("PRAGMA wal_autocheckpoint=20000")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    return engine


SCHEMA_LOCK = 0x6361727665  # "carve": the advisory lock of a store's schema changes


def create_tables(engine: Engine, metadata: Any) -> list[str]:
    """Create a store's tables, and add the nullable columns a newer release brought.

    A store made by an earlier release keeps its rows: columns added since are created
    empty (they are always nullable), so upgrading never means deleting ``var/``.
    Returns the columns added, as ``table.column``.
    """
    from sqlalchemy import inspect

    added = []
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting together on a new database take turns: one creates the
            # tables, the others find them (DDL is transactional in PostgreSQL).
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        metadata.create_all(connection)
        inspector = inspect(connection)
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                if not column.nullable:
                    raise RuntimeError(
                        f"table {table.name} lacks the required column {column.name}: "
                        "rebuild this store (carveout replay) or start from an empty one"
                    )
                kind = column.type.compile(dialect=engine.dialect)
                connection.exec_driver_sql(
                    f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'
                )
                added.append(f"{table.name}.{column.name}")
            if added:
                for index in table.indexes:  # those of the added columns
                    index.create(connection, checkfirst=True)
    if added:
        logging.getLogger("carveout").warning("store upgraded: added columns %s", added)
    return added
