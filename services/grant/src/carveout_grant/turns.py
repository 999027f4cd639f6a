"""Appenders to the grant outbox and history take turns (see :func:`take_turn`)."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session

HISTORY_LOCK = 0x6361_7276_6F75_7467  # the grant history's appenders take turns on it


def take_turn(session: Session) -> None:
    """Wait for this transaction's turn to append to the outbox and the grant history.

    A PostgreSQL sequence numbers rows as inserted, not as committed: replica A may take
    seq 7, B seq 8 and commit first, and a relay reading then publishes 8 before 7. An
    advisory lock held from before the outbox row until commit makes each appender wait
    for the one before to commit: seq order is commit order, and leaf order with it.
    SQLite has one writer, holding the database from its first write until commit."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": HISTORY_LOCK})
