"""The notification store: grant contacts and the processed-event marks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from carveout_contracts.common import iso_utc as iso

from .domain import GrantContacts


class NotificationTable(SQLModel, registry=registry()):
    """Base of this service's tables, with metadata of its own (no other store shares it)."""


class GrantContactsRecord(NotificationTable, table=True):
    __tablename__ = "grant_contacts"

    grant_id: str = Field(primary_key=True)
    grantee_id: str = Field(index=True)
    status: str
    version: int
    document: str


class ProcessedEvent(NotificationTable, table=True):
    __tablename__ = "processed_events"

    event_id: str = Field(primary_key=True)
    topic: str
    processed_at: str


class NotificationStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        NotificationTable.metadata.create_all(engine)

    def ping(self) -> None:
        with Session(self.engine) as session:
            session.exec(select(1)).one()

    def is_processed(self, event_id: str) -> bool:
        with Session(self.engine) as session:
            return session.get(ProcessedEvent, event_id) is not None

    def get_contacts(self, grant_id: str) -> GrantContacts | None:
        with Session(self.engine) as session:
            row = session.get(GrantContactsRecord, grant_id)
            return GrantContacts.model_validate_json(row.document) if row else None

    def save_contacts(
        self, views: Sequence[GrantContacts], *, event_id: str, topic: str, at: datetime
    ) -> None:
        """Store the changed views and mark the event processed, in one transaction."""
        with Session(self.engine) as session:
            for view in views:
                session.merge(
                    GrantContactsRecord(
                        grant_id=view.grant_id,
                        grantee_id=view.grantee_id,
                        status=view.status,
                        version=view.version,
                        document=view.model_dump_json(),
                    )
                )
            session.add(ProcessedEvent(event_id=event_id, topic=topic, processed_at=iso(at)))
            session.commit()
