"""What every service's store shares: its engine and tables, a ping, and processed marks.

Each service declares its tables on a base of its own (``SQLModel, registry=registry()``,
so no store shares another's metadata) and its ``processed_events`` table from
:class:`ProcessedEventColumns`; its store class derives from :class:`ServiceStore`.
A table of grants starts with :class:`GrantKeyColumns`.
"""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import Engine
from sqlmodel import Field, Session, SQLModel, select

from .stores import create_tables


class ProcessedEventColumns(SQLModel):
    """A consumed event's processed mark, committed with the event's effects (the
    consumers' dedupe: an event whose mark is present changes nothing again)."""

    event_id: str = Field(primary_key=True)
    topic: str
    processed_at: str


class GrantKeyColumns(SQLModel):
    """The first columns of a table of grants (the grant service's own, enforcement's
    views): the grant, its carveout and grantee (both looked up), and its model."""

    grant_id: str = Field(primary_key=True)
    carveout_id: str = Field(index=True)
    grantee_id: str = Field(index=True)
    model_id: str


class ServiceStore:
    """A service's store: tables made (and upgraded) on open, a ping, processed marks."""

    tables: ClassVar[type[SQLModel]]
    """The service's table base: its metadata holds every table of this store."""
    processed_events: ClassVar[type[ProcessedEventColumns]]

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(engine, self.tables.metadata)

    def _session(self) -> Session:
        """A session whose rows stay readable after its commit: a store hands them out."""
        return Session(self.engine, expire_on_commit=False)

    def ping(self) -> None:
        """Raise unless the store answers a query (readiness)."""
        with Session(self.engine) as session:
            session.exec(select(1)).one()

    def is_processed(self, event_id: str) -> bool:
        # Asked for every record consumed: a plain query on a connection costs half what a
        # session's get does (measured on PostgreSQL: 380 against 777 microseconds).
        table = self.processed_events.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as connection:
            found = connection.execute(
                select(table.c.event_id).where(table.c.event_id == event_id)
            ).first()
        return found is not None
