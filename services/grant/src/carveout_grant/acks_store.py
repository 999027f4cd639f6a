"""Where the grant service keeps what enforcement acknowledged (``carveout.acks``), and
reads a grant's history with where the log received each event.

Both writes are idempotent upserts keyed by what they describe, so neither needs a
processed mark: an ack is one row per (enforcer, grant, version), keeping the earliest
``applied_at`` (the same whatever order or how often the acks arrive, so a replay builds
the same table); a heartbeat replaces its enforcer's last one only when it is newer.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import or_
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, col, select

from carveout_contracts import EnforcementApplied, EnforcementHeartbeat, GrantEvent, codec, topics
from carveout_contracts.common import iso_utc as iso
from carveout_runtime.service_store import ServiceStore

from .propagation import Ack, Beat, LogPosition, VersionEvent, versions_of
from .store import GrantEventRecord, GrantRecord, ProcessedEvent


class AckTable(SQLModel, registry=registry()):
    """Base of the acknowledgement tables (made beside the grant store's, in its database)."""


class AckRecord(AckTable, table=True):
    """An enforcer applied a grant version (``enforcement.applied``)."""

    __tablename__ = "enforcement_acks"

    enforcer_id: str = Field(primary_key=True)
    grant_id: str = Field(primary_key=True)
    version: int = Field(primary_key=True)
    applied_at: str
    grant_event_id: str


class HeartbeatRecord(AckTable, table=True):
    """An enforcer's last heartbeat (``enforcement.heartbeat``)."""

    __tablename__ = "enforcer_heartbeats"

    enforcer_id: str = Field(primary_key=True)
    positions: str
    """JSON: for each grants partition, ``[next offset applied, first reported at]``."""
    at: str
    received_at: str


class AckStore(ServiceStore):
    """Acks and heartbeats, in the grant service's database."""

    tables = AckTable
    processed_events = ProcessedEvent

    def record_ack(self, ack: EnforcementApplied) -> bool:
        """Keep an ack; says whether it told something new (a first or an earlier time)."""
        d = ack.data
        applied_at = iso(d.applied_at)
        with self._session() as session:
            row = session.get(AckRecord, (d.enforcer_id, d.grant_id, d.version))
            if row is not None and row.applied_at <= applied_at:
                return False
            if row is None:
                row = AckRecord(
                    enforcer_id=d.enforcer_id,
                    grant_id=d.grant_id,
                    version=d.version,
                    applied_at=applied_at,
                    grant_event_id=str(d.grant_event_id),
                )
            else:
                row.applied_at, row.grant_event_id = applied_at, str(d.grant_event_id)
            session.add(row)
            session.commit()
            return True

    def record_heartbeat(self, beat: EnforcementHeartbeat, received_at: datetime) -> bool:
        """Keep an enforcer's heartbeat unless a newer one is kept; says whether it shows
        the enforcer further on, or for the first time."""
        d = beat.data
        at = iso(d.at)
        with self._session() as session:
            row = session.get(HeartbeatRecord, d.enforcer_id)
            if row is not None and row.at >= at:
                return False
            before: dict[str, list[object]] = json.loads(row.positions) if row else {}
            positions: dict[str, list[object]] = {}
            for partition, offset in d.grants_positions.items():
                known = before.get(str(partition))
                same = known is not None and known[0] == offset
                positions[str(partition)] = [offset, known[1] if same and known else at]
            moved = row is None or positions != before
            row = row or HeartbeatRecord(
                enforcer_id=d.enforcer_id, positions="", at="", received_at=""
            )
            row.positions = json.dumps(positions, sort_keys=True)
            row.at, row.received_at = at, iso(received_at)
            session.add(row)
            session.commit()
            return moved

    def acks_of(self, grant_id: str, version: int | None = None) -> list[Ack]:
        query = select(AckRecord).where(AckRecord.grant_id == grant_id)
        if version is not None:
            query = query.where(AckRecord.version == version)
        with self._session() as session:
            rows = session.exec(query).all()
        return [
            Ack(r.enforcer_id, r.grant_id, r.version, datetime.fromisoformat(r.applied_at))
            for r in rows
        ]

    def beats(self) -> list[Beat]:
        with self._session() as session:
            rows = session.exec(select(HeartbeatRecord)).all()
        return [_beat(row) for row in rows]

    def appended_at_of(self, event_id: str) -> datetime | None:
        """When the log received a grant event (``None`` when unknown or unpublished)."""
        with self._session() as session:
            found = select(GrantEventRecord.appended_at).where(
                GrantEventRecord.event_id == event_id
            )
            appended = session.exec(found).first()
        return datetime.fromisoformat(appended) if appended else None

    def versions(self, grant_id: str) -> list[VersionEvent] | None:
        """Every version of a grant, from the event that made it, with where the log
        received each; ``None`` for a grant never issued.

        A carveout's revocation is keyed (and stored) under its first grant, so the
        revocations of the grant's carveout are read too, and kept when they name it.
        """
        with self._session() as session:
            grant = session.get(GrantRecord, grant_id)
            if grant is None:
                return None
            siblings = select(GrantRecord.grant_id).where(
                GrantRecord.carveout_id == grant.carveout_id
            )
            rows = session.exec(
                select(GrantEventRecord)
                .where(
                    or_(
                        col(GrantEventRecord.grant_id) == grant_id,
                        (col(GrantEventRecord.type) == "carveout.revoked")
                        & col(GrantEventRecord.grant_id).in_(siblings),
                    )
                )
                .order_by(col(GrantEventRecord.seq))
            ).all()
        return versions_of(grant_id, ((_event(row), _position(row)) for row in rows))


def _event(row: GrantEventRecord) -> GrantEvent:
    event: GrantEvent = codec.decode(topics.GRANTS, row.payload.encode())
    return event


def _position(row: GrantEventRecord) -> LogPosition | None:
    if row.log_partition is None or row.log_offset is None or row.appended_at is None:
        return None
    return LogPosition(row.log_partition, row.log_offset, datetime.fromisoformat(row.appended_at))


def _beat(row: HeartbeatRecord) -> Beat:
    positions: dict[str, list[object]] = json.loads(row.positions)
    return Beat(
        enforcer_id=row.enforcer_id,
        positions={int(p): int(str(v[0])) for p, v in positions.items()},
        since={int(p): datetime.fromisoformat(str(v[1])) for p, v in positions.items()},
        at=datetime.fromisoformat(row.at),
        received_at=datetime.fromisoformat(row.received_at),
    )
