"""The relay lease in the grant service's database: which replica relays the outbox.

One row, applied with :func:`~.lease.claim` as a compare-and-set: the row is updated only
if it still holds the holder and end the replica read, so of two replicas asking at once
exactly one wins (PostgreSQL re-checks an ``UPDATE``'s condition against a row another
transaction changed meanwhile; SQLite has one writer at a time).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col

from carveout_contracts.common import iso_utc as iso
from carveout_runtime.service_store import ServiceStore

from .lease import Lease, claim
from .store import ProcessedEvent

OUTBOX = "outbox"
ENDED = datetime(1970, 1, 1, tzinfo=UTC)
"""What a released lease ends at: long ago, so any replica may take it at once."""


class LeaseTable(SQLModel, registry=registry()):
    """Base of the lease table (made beside the grant store's, in its database)."""


class RelayLeaseRecord(LeaseTable, table=True):
    """Who relays the outbox, and until when (DESIGN §11)."""

    __tablename__ = "relay_lease"

    name: str = Field(primary_key=True)
    holder: str
    lease_until: str
    taken: int = 0
    """How many times the lease changed hands: each new holder is a new term."""


class RelayLeases(ServiceStore):
    """The relay lease, read and claimed; every replica's relay asks here."""

    tables = LeaseTable
    processed_events = ProcessedEvent

    def current(self, name: str = OUTBOX) -> Lease | None:
        with Session(self.engine) as session:
            row = session.get(RelayLeaseRecord, name)
            return _lease(row) if row is not None else None

    def take(self, holder: str, now: datetime, seconds: float, name: str = OUTBOX) -> Lease | None:
        """Take or renew the lease for ``holder`` at ``now`` for ``seconds``: the lease in
        force after asking, ``holder``'s or, while it runs, another replica's."""
        with Session(self.engine) as session:
            row = session.get(RelayLeaseRecord, name)
            wanted = claim(_lease(row) if row is not None else None, holder, now, seconds)
            if wanted is None:
                return _lease(row) if row is not None else None
            if row is None:
                session.add(
                    RelayLeaseRecord(
                        name=name, holder=holder, lease_until=iso(wanted.until), taken=1
                    )
                )
                try:
                    session.commit()
                except IntegrityError:
                    return self.current(name)  # another replica made the row first
                return wanted
            changed = session.exec(
                update(RelayLeaseRecord)
                .where(
                    col(RelayLeaseRecord.name) == name,
                    col(RelayLeaseRecord.holder) == row.holder,
                    col(RelayLeaseRecord.lease_until) == row.lease_until,
                )
                .values(
                    holder=holder,
                    lease_until=iso(wanted.until),
                    taken=row.taken + (row.holder != holder),
                )
            )
            session.commit()
        return wanted if changed.rowcount == 1 else self.current(name)

    def release(self, holder: str, name: str = OUTBOX) -> bool:
        """End ``holder``'s lease now (a replica stopping), so another takes over without
        waiting for it to run out; whether it held it."""
        with Session(self.engine) as session:
            changed = session.exec(
                update(RelayLeaseRecord)
                .where(col(RelayLeaseRecord.name) == name, col(RelayLeaseRecord.holder) == holder)
                .values(lease_until=iso(ENDED))
            )
            session.commit()
            return bool(changed.rowcount == 1)


def _lease(row: RelayLeaseRecord) -> Lease:
    return Lease(row.holder, datetime.fromisoformat(row.lease_until))
