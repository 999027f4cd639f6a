"""The grant service's store: grants, their event history (the outbox) and processed events.

The history table doubles as the transactional outbox: a grant change and the event
announcing it are written in one transaction, and the relay publishes rows in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, func, update
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col, select

from carveout_contracts import Envelope
from carveout_contracts.common import iso_utc as iso
from carveout_runtime.merkle import leaf_hash
from carveout_runtime.service_store import GrantKeyColumns, ProcessedEventColumns, ServiceStore
from carveout_runtime.tlog import CheckpointColumns

from .domain import Grant, PublicStatus
from .outbox_signal import announce
from .propagation import LogPosition
from .turns import take_turn


class GrantTable(SQLModel, registry=registry()):
    """Base of this service's tables, with metadata of its own (no other store shares it)."""


class GrantRecord(GrantKeyColumns, GrantTable, table=True):
    __tablename__ = "grants"

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
    log_partition: int | None = None
    """Where and when the grants log received the event (``None`` until published)."""
    log_offset: int | None = None
    appended_at: str | None = None


class GrantLogLeaf(GrantTable, table=True):
    """A recorded grant event as a leaf of the grant history log, ``carveout.grants``
    (DESIGN §12): the leaf is the event's value bytes, as the relay publishes them."""

    __tablename__ = "grant_log_leaves"

    leaf_index: int = Field(primary_key=True, sa_type=BigInteger)
    event_id: str = Field(unique=True)
    leaf_hash: str
    """The leaf's RFC 6962 hash, hex."""


class GrantCheckpoint(CheckpointColumns, GrantTable, table=True):
    """A signed checkpoint of the grant history log."""

    __tablename__ = "checkpoints"


class PolicyBreach(GrantTable, table=True):
    """A critical breach of a grant, kept to apply the grant's breach policy."""

    __tablename__ = "policy_breaches"

    breach_id: str = Field(primary_key=True)
    grant_id: str = Field(index=True)
    occurred_at: str


class ProcessedEvent(ProcessedEventColumns, GrantTable, table=True):
    __tablename__ = "processed_events"


class StaleGrant(Exception):
    """A grant changed between reading it and recording a change to it."""


@dataclass(frozen=True, slots=True)
class GrantChange:
    """Grants changed by one event, to be recorded with it (the outbox row).

    The row continues ``traceparent``; ``expected_versions`` guards against a concurrent
    change: the grants must still be at those versions, or :class:`StaleGrant` is raised
    and nothing is written.
    """

    grants: Sequence[Grant]
    event: Envelope
    traceparent: str | None
    expected_versions: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class GrantListing:
    """Which grants a listing asks for (every filter optional), and the page."""

    grantee_id: str | None = None
    carveout_id: str | None = None
    status: PublicStatus | None = None
    limit: int = 50
    offset: int = 0


class GrantStore(ServiceStore):
    tables = GrantTable
    processed_events = ProcessedEvent

    def record(
        self,
        grants: Sequence[Grant],
        event: Envelope,
        traceparent: str | None,
        expected_versions: dict[str, int] | None = None,
    ) -> int:
        """Save the changed grants and the event announcing the change, atomically; the
        event's outbox sequence. See :class:`GrantChange` for ``expected_versions``."""
        return self.record_all([GrantChange(grants, event, traceparent, expected_versions)])

    def record_all(self, changes: Sequence[GrantChange]) -> int:
        """Several changes and their events in one transaction, in order; the last one's
        outbox sequence (one action announced by several events, one per partition)."""
        with self._session() as session:
            seqs = [self._write_change(session, change) for change in changes]
            session.commit()
            return seqs[-1]

    def record_from_log(
        self,
        change: GrantChange,
        payload: str,
        published_at: datetime,
        position: LogPosition | None = None,
    ) -> None:
        """A grant change read back from the log (replay): recorded as published already,
        at ``position``."""
        with self._session() as session:
            seq = self._write_change(session, change, payload=payload, published_at=published_at)
            if position is not None:
                _place(session, seq, position)
            session.commit()

    def _write_change(
        self,
        session: Session,
        change: GrantChange,
        *,
        payload: str | None = None,
        published_at: datetime | None = None,
    ) -> int:
        # First, before the grants' row locks and the outbox row: writers take turns, so
        # the outbox's sequence follows commit order (see :func:`take_turn`) and grant
        # rows are always locked in the same order (by id), never deadlocking.
        take_turn(session)
        for grant_id, version in sorted((change.expected_versions or {}).items()):
            current = session.get(GrantRecord, grant_id, with_for_update=True)
            if current is None or current.version != version:
                raise StaleGrant(f"grant {grant_id} changed meanwhile; try again")
        for grant in change.grants:
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
        event = change.event
        outbox = GrantEventRecord(
            event_id=str(event.event_id),
            grant_id=event.key,
            type=event.type,
            topic=event.TOPIC,
            key=event.key,
            payload=payload if payload is not None else event.model_dump_json(),
            traceparent=change.traceparent,
            created_at=iso(event.occurred_at),
            published_at=iso(published_at) if published_at is not None else None,
        )
        session.add(outbox)
        session.flush()
        assert outbox.seq is not None
        append_history_leaf(session, outbox.event_id, outbox.payload)
        if published_at is None:
            announce(session)  # to be relayed: the relay, on whichever replica, hears at commit
        return outbox.seq

    def get(self, grant_id: str) -> Grant | None:
        with self._session() as session:
            row = session.get(GrantRecord, grant_id)
            return Grant.model_validate_json(row.document) if row else None

    def find(self, listing: GrantListing, now: datetime) -> tuple[list[Grant], int]:
        """A page of the grants ``listing`` asks for, by id, and how many there are in all;
        ``now`` tells active grants from expired ones."""
        query = select(GrantRecord)
        if listing.grantee_id:
            query = query.where(GrantRecord.grantee_id == listing.grantee_id)
        if listing.carveout_id:
            query = query.where(GrantRecord.carveout_id == listing.carveout_id)
        status = listing.status
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
                query.order_by(col(GrantRecord.grant_id))
                .offset(listing.offset)
                .limit(listing.limit)
            ).all()
        return [Grant.model_validate_json(r.document) for r in rows], int(total)

    def critical_breaches(self, grant_id: str, since: datetime) -> list[tuple[str, datetime]]:
        with self._session() as session:
            rows = session.exec(
                select(PolicyBreach).where(
                    PolicyBreach.grant_id == grant_id, PolicyBreach.occurred_at > iso(since)
                )
            ).all()
        return [(r.breach_id, datetime.fromisoformat(r.occurred_at)) for r in rows]

    def record_breach(
        self,
        event: Envelope,
        breach: PolicyBreach | None,
        action: GrantChange | None,
        at: datetime,
    ) -> int | None:
        """A consumed breach ``event`` processed at ``at``: the breach the policy counts and
        the action it trips, if any, in one transaction with the processed mark.

        Returns the outbox sequence of the action's event, or ``None`` when there is no
        action or its event is recorded already (the action was ordered before).
        """
        with self._session() as session:
            if breach is not None and session.get(PolicyBreach, breach.breach_id) is None:
                session.add(breach)
            seq = None
            if action is not None and not _has_event(session, str(action.event.event_id)):
                seq = self._write_change(session, action)
            processed = ProcessedEvent(
                event_id=str(event.event_id), topic=event.TOPIC, processed_at=iso(at)
            )
            session.add(processed)
            session.commit()
            return seq

    def of_carveout(self, carveout_id: str) -> list[Grant]:
        with self._session() as session:
            rows = session.exec(
                select(GrantRecord)
                .where(GrantRecord.carveout_id == carveout_id)
                .order_by(col(GrantRecord.grant_id))
            ).all()
        return [Grant.model_validate_json(r.document) for r in rows]

    def has_event(self, event_id: str) -> bool:
        with self._session() as session:
            return _has_event(session, event_id)

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

    def mark_published(
        self, seqs: Sequence[int], at: datetime, positions: Mapping[int, LogPosition] | None = None
    ) -> None:
        """Mark events published at ``at``; ``positions`` says, by sequence, where and when
        the log received them. A marked event keeps its first mark and position (a relay
        that lost its lease mid-batch may publish again what the next relay did)."""
        positions = positions or {}
        with self._session() as session:
            for seq in seqs:
                values: dict[str, object] = {"published_at": iso(at)}
                if (position := positions.get(seq)) is not None:
                    values |= _position_values(position)
                session.exec(
                    update(GrantEventRecord)
                    .where(
                        col(GrantEventRecord.seq) == seq,
                        col(GrantEventRecord.published_at).is_(None),
                    )
                    .values(**values)
                )
            session.commit()

    def is_published(self, seq: int) -> bool:
        """Whether the event of outbox sequence ``seq`` is published, by whichever replica
        relays (events are published in sequence order, so every earlier one is too)."""
        with self._session() as session:
            published = session.exec(
                select(GrantEventRecord.published_at).where(GrantEventRecord.seq == seq)
            ).first()
        return published is not None

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


def _position_values(position: LogPosition) -> dict[str, object]:
    return {
        "log_partition": position.partition,
        "log_offset": position.offset,
        "appended_at": iso(position.appended_at),
    }


def _place(session: Session, seq: int, position: LogPosition) -> None:
    session.exec(
        update(GrantEventRecord)
        .where(col(GrantEventRecord.seq) == seq)
        .values(**_position_values(position))
    )


def append_history_leaf(session: Session, event_id: str, payload: str) -> int:
    """Append a grant event to the grant history log in the transaction recording it:
    the store and the log never disagree. Appenders (replicas) take turns."""
    take_turn(session)
    last = session.exec(select(func.max(GrantLogLeaf.leaf_index))).one()
    index = 0 if last is None else int(last) + 1
    hashed = leaf_hash(payload.encode()).hex()
    session.add(GrantLogLeaf(leaf_index=index, event_id=event_id, leaf_hash=hashed))
    return index


def _has_event(session: Session, event_id: str) -> bool:
    found = select(GrantEventRecord.seq).where(GrantEventRecord.event_id == event_id)
    return session.exec(found).first() is not None
