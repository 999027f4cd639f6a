"""The grant service's store: grants, their event history (the outbox) and processed events.

The history table doubles as the transactional outbox: a grant change and the event
announcing it are written in one transaction, and the relay publishes rows in order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Engine, func, update
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col, select

from carveout_contracts import Envelope
from carveout_contracts.common import iso_utc as iso

from .domain import Grant, PublicStatus


class GrantTable(SQLModel, registry=registry()):
    """Base of this service's tables, with metadata of its own (no other store shares it)."""


class GrantRecord(GrantTable, table=True):
    __tablename__ = "grants"

    grant_id: str = Field(primary_key=True)
    carveout_id: str = Field(index=True)
    grantee_id: str = Field(index=True)
    model_id: str
    lifecycle: str = Field(index=True)
    version: int
    valid_until: str
    updated_at: str
    document: str


class GrantEventRecord(GrantTable, table=True):
    __tablename__ = "grant_events"

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True)
    grant_id: str = Field(index=True)
    type: str
    topic: str
    key: str
    payload: str
    traceparent: str | None = None
    created_at: str
    published_at: str | None = Field(default=None, index=True)


class ProcessedEvent(GrantTable, table=True):
    __tablename__ = "processed_events"

    event_id: str = Field(primary_key=True)
    topic: str
    processed_at: str


class GrantStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        GrantTable.metadata.create_all(engine)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def ping(self) -> None:
        with self._session() as session:
            session.exec(select(1)).one()

    def record(self, grants: Sequence[Grant], event: Envelope, traceparent: str | None) -> int:
        """Save the changed grants and the event announcing the change, atomically."""
        with self._session() as session:
            for grant in grants:
                session.merge(
                    GrantRecord(
                        grant_id=grant.grant_id,
                        carveout_id=grant.carveout_id,
                        grantee_id=grant.grantee.id,
                        model_id=grant.model_id,
                        lifecycle=grant.lifecycle,
                        version=grant.version,
                        valid_until=iso(grant.valid_until),
                        updated_at=iso(grant.updated_at),
                        document=grant.model_dump_json(),
                    )
                )
            row = GrantEventRecord(
                event_id=str(event.event_id),
                grant_id=event.key,
                type=event.type,
                topic=event.TOPIC,
                key=event.key,
                payload=event.model_dump_json(),
                traceparent=traceparent,
                created_at=iso(event.occurred_at),
            )
            session.add(row)
            session.commit()
            assert row.seq is not None
            return row.seq

    def get(self, grant_id: str) -> Grant | None:
        with self._session() as session:
            row = session.get(GrantRecord, grant_id)
            return Grant.model_validate_json(row.document) if row else None

    def find(
        self,
        *,
        now: datetime,
        grantee_id: str | None = None,
        carveout_id: str | None = None,
        status: PublicStatus | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Grant], int]:
        query = select(GrantRecord)
        if grantee_id:
            query = query.where(GrantRecord.grantee_id == grantee_id)
        if carveout_id:
            query = query.where(GrantRecord.carveout_id == carveout_id)
        if status == "expired":
            query = query.where(
                GrantRecord.lifecycle == "active", GrantRecord.valid_until <= iso(now)
            )
        elif status == "active":
            query = query.where(
                GrantRecord.lifecycle == "active", GrantRecord.valid_until > iso(now)
            )
        elif status is not None:
            query = query.where(GrantRecord.lifecycle == status)
        with self._session() as session:
            total = session.exec(select(func.count()).select_from(query.subquery())).one()
            rows = session.exec(
                query.order_by(col(GrantRecord.grant_id)).offset(offset).limit(limit)
            ).all()
        return [Grant.model_validate_json(r.document) for r in rows], int(total)

    # ----------------------------------------------------------------- outbox

    def unpublished(self, limit: int = 500) -> list[GrantEventRecord]:
        with self._session() as session:
            return list(
                session.exec(
                    select(GrantEventRecord)
                    .where(col(GrantEventRecord.published_at).is_(None))
                    .order_by(col(GrantEventRecord.seq))
                    .limit(limit)
                ).all()
            )

    def mark_published(self, seqs: Sequence[int], at: datetime) -> None:
        with self._session() as session:
            session.exec(
                update(GrantEventRecord)
                .where(col(GrantEventRecord.seq).in_(seqs))
                .values(published_at=iso(at))
            )
            session.commit()

    def counts(self) -> tuple[int, int]:
        """(events recorded, events published)."""
        with self._session() as session:
            total = session.exec(select(func.count()).select_from(GrantEventRecord)).one()
            published = session.exec(
                select(func.count())
                .select_from(GrantEventRecord)
                .where(col(GrantEventRecord.published_at).is_not(None))
            ).one()
        return int(total), int(published)

    def mark_all_unpublished(self) -> int:
        with self._session() as session:
            result = session.exec(
                update(GrantEventRecord)
                .where(col(GrantEventRecord.published_at).is_not(None))
                .values(published_at=None)
            )
            session.commit()
            return int(result.rowcount)

    def last_seq(self) -> int:
        with self._session() as session:
            value = session.exec(select(func.max(GrantEventRecord.seq))).one()
        return int(value or 0)
