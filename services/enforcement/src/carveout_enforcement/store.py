"""The enforcement store: the grant projection and the processed-event marks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from carveout_contracts.common import iso_utc as iso

from .domain import GrantView


class EnforcementTable(SQLModel, registry=registry()):
    """Base of this service's tables, with metadata of its own (no other store shares it)."""


class GrantViewRecord(EnforcementTable, table=True):
    __tablename__ = "grant_views"

    grant_id: str = Field(primary_key=True)
    carveout_id: str = Field(index=True)
    grantee_id: str = Field(index=True)
    model_id: str
    status: str
    version: int
    updated_at: str
    document: str


class ProcessedEvent(EnforcementTable, table=True):
    __tablename__ = "processed_events"

    event_id: str = Field(primary_key=True)
    topic: str
    processed_at: str


class EnforcementStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        EnforcementTable.metadata.create_all(engine)

    def ping(self) -> None:
        with Session(self.engine) as session:
            session.exec(select(1)).one()

    def is_processed(self, event_id: str) -> bool:
        with Session(self.engine) as session:
            return session.get(ProcessedEvent, event_id) is not None

    def save_grants(
        self, views: Sequence[GrantView], *, event_id: str, topic: str, at: datetime
    ) -> None:
        """Store the changed views and mark the event processed, in one transaction."""
        with Session(self.engine) as session:
            for view in views:
                session.merge(
                    GrantViewRecord(
                        grant_id=view.grant_id,
                        carveout_id=view.carveout_id,
                        grantee_id=view.grantee_id,
                        model_id=view.model_id,
                        status=view.status,
                        version=view.version,
                        updated_at=iso(view.updated_at),
                        document=view.model_dump_json(),
                    )
                )
            session.add(ProcessedEvent(event_id=event_id, topic=topic, processed_at=iso(at)))
            session.commit()

    def load_grants(self) -> Iterable[GrantView]:
        with Session(self.engine) as session:
            for row in session.exec(select(GrantViewRecord)):
                yield GrantView.model_validate_json(row.document)
