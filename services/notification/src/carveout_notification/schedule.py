"""The delivery schedule in the store: what is due, who claims it, outcomes and their
announcement, for any number of replicas sharing the store.

Every change of a claim or an outcome is one conditional ``UPDATE`` stating a rule of
:mod:`.claims`: of two replicas asking at once exactly one wins, as PostgreSQL re-checks
an ``UPDATE``'s condition against a row another transaction changed meanwhile, and SQLite
has one writer at a time. Batches are chosen with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so replicas claiming at once never wait on each other's rows (nor deadlock).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, case, func, or_, update
from sqlmodel import Session, col, select

from carveout_contracts.common import iso_utc as iso

from .tables import NotificationRecord as Row

ID = col(Row.notification_id)
PENDING = col(Row.status) == "pending"
UNANNOUNCED = and_(col(Row.outcome_event).is_not(None), col(Row.announced_at).is_(None))


def claimable_at(now: datetime) -> ColumnElement[bool]:
    """:func:`.claims.claimable` in SQL: nobody holds it, or the lease ran out."""
    return or_(
        col(Row.claimed_by).is_(None),
        col(Row.lease_until).is_(None),
        col(Row.lease_until) < iso(now),
    )


def held_by(replica: str) -> ColumnElement[bool]:
    """:func:`.claims.holds` in SQL."""
    return col(Row.claimed_by) == replica


@dataclass(frozen=True, slots=True)
class DueHead:
    """A notification due, as far as choosing which to start needs it."""

    notification_id: str
    channel: str
    address: str


class DeliverySchedule:
    """The notifications' schedule and claims; mixed into the notification store."""

    engine: Engine

    def due(self, now: datetime, limit: int = 100, exclude: Collection[str] = ()) -> list[Row]:
        """Pending notifications due and claimable at ``now``, earliest first, but those
        in ``exclude`` (this replica's attempts in flight)."""
        return self.rows([head.notification_id for head in self.due_heads(now, limit, exclude)])

    def due_heads(
        self, now: datetime, limit: int = 100, exclude: Collection[str] = ()
    ) -> list[DueHead]:
        """What :meth:`due` returns, without the payloads: enough to choose among them.

        The deliverer asks every round for several times more than it can start (some
        may be for a receiver at its share); whole rows would be built, payloads and all,
        for the many it leaves, each round.
        """
        query = select(Row.notification_id, Row.channel, Row.address).where(
            PENDING, Row.next_attempt_at <= iso(now), claimable_at(now)
        )
        if exclude:
            query = query.where(ID.not_in(list(exclude)))
        with Session(self.engine) as session:
            found = session.exec(query.order_by(col(Row.next_attempt_at)).limit(limit)).all()
        return [DueHead(*row) for row in found]

    def rows(self, notification_ids: Sequence[str]) -> list[Row]:
        """The notifications of ``notification_ids``, in that order (those that exist)."""
        if not notification_ids:
            return []
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(Row).where(ID.in_(notification_ids))
            found = {n.notification_id: n for n in session.exec(query)}
        return [found[n] for n in notification_ids if n in found]

    def next_due_at(self, exclude: Collection[str] = ()) -> datetime | None:
        """When the next pending notification may be started: :func:`.claims.startable_at`."""
        startable = case(
            (
                and_(col(Row.claimed_by).is_not(None), col(Row.lease_until) > Row.next_attempt_at),
                Row.lease_until,
            ),
            else_=Row.next_attempt_at,
        )
        query = select(func.min(startable)).where(PENDING)
        if exclude:
            query = query.where(ID.not_in(list(exclude)))
        with Session(self.engine) as session:
            first = session.exec(query).one()
        return datetime.fromisoformat(first) if first else None

    def claim(
        self, notification_ids: Iterable[str], replica: str, now: datetime, until: datetime
    ) -> set[str]:
        """Claim for ``replica`` until ``until`` those of ``notification_ids`` still pending
        and claimable at ``now``; returns the ids it now holds."""
        ids = list(notification_ids)
        if not ids:
            return set()
        chosen = (
            select(Row.notification_id)
            .where(ID.in_(ids), PENDING, claimable_at(now))
            .with_for_update(skip_locked=True)
        )
        return self._take(chosen, replica, until, claimable_at(now))

    def claim_unannounced(
        self, replica: str, now: datetime, until: datetime, limit: int = 500
    ) -> list[tuple[str, str]]:
        """(notification id, outcome event JSON) of the final outcomes ``replica`` is to
        publish, oldest first, their claims renewed until ``until``: those it recorded, and
        those whose recorder's lease ran out first (claimed here, so one replica publishes
        each)."""
        mine = or_(claimable_at(now), held_by(replica))
        with Session(self.engine) as session:
            # Asked every round: read first, so that an empty outbox costs no write.
            if session.exec(select(Row.notification_id).where(UNANNOUNCED, mine)).first() is None:
                return []
        orphaned = (
            select(Row.notification_id)
            .where(UNANNOUNCED, mine)
            .order_by(col(Row.finished_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        self._take(orphaned, replica, until, mine)
        with Session(self.engine) as session:
            rows = session.exec(
                select(Row.notification_id, Row.outcome_event)
                .where(UNANNOUNCED, held_by(replica))
                .order_by(col(Row.finished_at))
                .limit(limit)
            ).all()
        return [(nid, event) for nid, event in rows if event is not None]

    def _take(
        self, chosen: Any, replica: str, until: datetime, condition: ColumnElement[bool]
    ) -> set[str]:
        # The condition again on the row updated: a row another replica claimed between
        # the choice and the update is left to it.
        with Session(self.engine) as session:
            taken = session.execute(
                update(Row)
                .where(ID.in_(chosen.scalar_subquery()), condition)
                .values(claimed_by=replica, lease_until=iso(until))
                .returning(ID)
            )
            ids = set(taken.scalars())
            session.commit()
        return ids

    def renew(self, notification_ids: Iterable[str], replica: str, until: datetime) -> set[str]:
        """Extend ``replica``'s claims on ``notification_ids`` to ``until``; returns those it
        still held (the others were taken over while it stalled)."""
        ids = list(notification_ids)
        if not ids:
            return set()
        with Session(self.engine) as session:
            renewed = session.execute(
                update(Row)
                .where(ID.in_(ids), held_by(replica))
                .values(lease_until=iso(until))
                .returning(ID)
            )
            held = set(renewed.scalars())
            session.commit()
        return held

    def release(self, replica: str, notification_ids: Iterable[str] | None = None) -> int:
        """Give up ``replica``'s claims (on ``notification_ids``, or all of them), so
        another replica takes over at once instead of when the leases run out."""
        condition = held_by(replica)
        if notification_ids is not None:
            condition = and_(condition, ID.in_(list(notification_ids)))
        with Session(self.engine) as session:
            released = session.execute(
                update(Row).where(condition).values(claimed_by=None, lease_until=None)
            )
            session.commit()
        return int(released.rowcount)  # type: ignore[attr-defined]

    def finish_attempt(
        self,
        notification_id: str,
        *,
        replica: str,
        status: str,
        attempts: int,
        next_attempt_at: datetime | None,
        error: str | None,
        at: datetime,
        until: datetime,
        outcome_event: str | None = None,
    ) -> bool:
        """Record one attempt's outcome, if ``replica`` still holds the claim and the
        notification is still pending; says whether it was recorded.

        A final outcome comes with the event announcing it, written in the same
        transaction and published after (an outbox); the claim is kept until ``until``
        for publishing it. An attempt to be made again gives the claim up: any replica
        makes it, when due.
        """
        values: dict[str, Any] = {"status": status, "attempts": attempts, "last_error": error}
        if next_attempt_at is not None:
            values["next_attempt_at"] = iso(next_attempt_at)
        announcing = status != "pending" and outcome_event is not None
        if status != "pending":
            values |= {"finished_at": iso(at), "outcome_event": outcome_event}
        values |= {
            "claimed_by": replica if announcing else None,
            "lease_until": iso(until) if announcing else None,
        }
        with Session(self.engine) as session:
            recorded = session.execute(
                update(Row)
                .where(col(Row.notification_id) == notification_id, PENDING, held_by(replica))
                .values(**values)
            )
            session.commit()
        return bool(recorded.rowcount == 1)  # type: ignore[attr-defined]

    def unannounced(self, limit: int = 500) -> list[tuple[str, str]]:
        """(notification id, outcome event JSON) of final outcomes not yet published,
        whoever holds them."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(Row.notification_id, Row.outcome_event)
                .where(UNANNOUNCED)
                .order_by(col(Row.finished_at))
                .limit(limit)
            ).all()
        return [(nid, event) for nid, event in rows if event is not None]

    def traceparents(self, notification_ids: Sequence[str]) -> dict[str, str | None]:
        """Each notification's trace context (that of the event it tells of)."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(Row.notification_id, Row.traceparent).where(ID.in_(notification_ids))
            ).all()
        return dict(rows)

    def mark_all_unannounced(self) -> int:
        """Every outcome to be published again (``carveout.notifications`` restarted empty);
        how many."""
        with Session(self.engine) as session:
            result = session.execute(
                update(Row)
                .where(col(Row.outcome_event).is_not(None), col(Row.announced_at).is_not(None))
                .values(announced_at=None)
            )
            session.commit()
            return int(result.rowcount)  # type: ignore[attr-defined]

    def mark_announced(self, notification_ids: Sequence[str], at: datetime) -> None:
        """Published: the work on these notifications is over, and so are their claims."""
        with Session(self.engine) as session:
            session.execute(
                update(Row)
                .where(ID.in_(notification_ids))
                .values(announced_at=iso(at), claimed_by=None, lease_until=None)
            )
            session.commit()
