"""How far each grant version has propagated to enforcement (DESIGN §12): pure.

Every enforcement replica (an *enforcer*) acknowledges each grant version its decisions
apply, and says every second how far it has applied the grants log. From those, and the
grant's own history with where and when the log received each event, this module answers
for each version: who has applied it and when, which live enforcers have not yet, and
whether (and since when) every live one has. No I/O and no clock: time comes in as ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from carveout_contracts import CarveoutRevoked, GrantEvent, GrantIssued, affected_grants

ALIVE_FOR = timedelta(seconds=3)
"""An enforcer is alive while its last heartbeat is younger than this (DESIGN §12)."""


@dataclass(frozen=True, slots=True)
class LogPosition:
    """Where and when the grants log received one event."""

    partition: int
    offset: int
    appended_at: datetime
    """The broker's append time (LogAppendTime), else when the publish was acknowledged."""


@dataclass(frozen=True, slots=True)
class VersionEvent:
    """The event that made one version of a grant."""

    grant_id: str
    version: int
    event_id: str
    event_type: str
    effective_at: datetime
    position: LogPosition | None
    """``None`` until the relay has published the event."""


@dataclass(frozen=True, slots=True)
class Ack:
    """An enforcer acknowledged applying a grant version (``enforcement.applied``)."""

    enforcer_id: str
    grant_id: str
    version: int
    applied_at: datetime


@dataclass(frozen=True, slots=True)
class Beat:
    """An enforcer's last heartbeat: how far it has applied each grants partition."""

    enforcer_id: str
    positions: Mapping[int, int]
    """For each partition, the next offset the enforcer applies."""
    since: Mapping[int, datetime]
    """For each partition, the time of the first heartbeat that showed its position."""
    at: datetime
    """When the enforcer sent it."""
    received_at: datetime
    """When the grant service read it (its own clock)."""

    @property
    def seen_at(self) -> datetime:
        # A heartbeat stamped ahead of the grant service's clock counts from when it was
        # read, so an enforcer whose clock runs fast cannot stay "alive" after it stopped.
        return min(self.at, self.received_at)

    def alive(self, now: datetime) -> bool:
        return now - self.seen_at < ALIVE_FOR

    def has_passed(self, position: LogPosition) -> bool:
        return self.positions.get(position.partition, 0) > position.offset


@dataclass(frozen=True, slots=True)
class Applied:
    """One enforcer's application of a version: by its ack, or shown by a heartbeat."""

    enforcer_id: str
    applied_at: datetime
    """The ack's time; for a heartbeat, the first one showing the version passed (at the
    latest then)."""
    via: Literal["ack", "heartbeat"]


@dataclass(frozen=True, slots=True)
class VersionPropagation:
    """One version's propagation, as ``GET /v1/grants/{id}/propagation`` answers it."""

    event: VersionEvent
    enforcers: tuple[Applied, ...]
    pending: tuple[str, ...]
    """Live enforcers that have not applied it yet."""
    complete: bool
    complete_at: datetime | None


def version_after(event: GrantEvent, grant_id: str, before: int) -> int:
    """The version of ``grant_id`` that ``event`` makes, given the version ``before`` it."""
    if isinstance(event, GrantIssued):
        return 1
    if isinstance(event, CarveoutRevoked):
        return event.data.grant_versions.get(grant_id, before + 1)
    return event.data.version


def effective_at(event: GrantEvent) -> datetime:
    """From when an event's change is in force: its ``effective_at``; an issue, its time."""
    if isinstance(event, GrantIssued):
        return event.occurred_at
    return event.data.effective_at


def versions_of(
    grant_id: str, history: Iterable[tuple[GrantEvent, LogPosition | None]]
) -> list[VersionEvent]:
    """The versions of ``grant_id`` its history (events in the order recorded, with where
    the log received each) made; events of other grants are passed over."""
    versions: list[VersionEvent] = []
    for event, position in history:
        if grant_id not in affected_grants(event):
            continue
        before = versions[-1].version if versions else 0
        versions.append(
            VersionEvent(
                grant_id=grant_id,
                version=version_after(event, grant_id, before),
                event_id=str(event.event_id),
                event_type=event.type,
                effective_at=effective_at(event),
                position=position,
            )
        )
    return versions


def alive_enforcers(beats: Iterable[Beat], now: datetime) -> list[str]:
    """The enforcers whose last heartbeat is younger than :data:`ALIVE_FOR`, by id."""
    return sorted(beat.enforcer_id for beat in beats if beat.alive(now))


def propagation_of(
    event: VersionEvent, acks: Iterable[Ack], beats: Sequence[Beat], now: datetime
) -> VersionPropagation:
    """Who has applied ``event``'s version, who alive has not, and whether every live
    enforcer has.

    An enforcer has applied a version when it acknowledged it, or when a heartbeat shows
    its position on the event's partition beyond the event's offset. Propagation is
    complete once at least one enforcer has applied it and no live one is pending;
    ``complete_at`` is when the last of the live enforcers applied it (of every enforcer
    that did, when none of them is alive any more).
    """
    applied: dict[str, Applied] = {}
    for ack in acks:
        if (ack.grant_id, ack.version) != (event.grant_id, event.version):
            continue
        known = applied.get(ack.enforcer_id)
        if known is None or ack.applied_at < known.applied_at:
            applied[ack.enforcer_id] = Applied(ack.enforcer_id, ack.applied_at, "ack")
    if event.position is not None:
        for beat in beats:
            if beat.enforcer_id not in applied and beat.has_passed(event.position):
                since = beat.since.get(event.position.partition, beat.at)
                applied[beat.enforcer_id] = Applied(beat.enforcer_id, since, "heartbeat")
    alive = alive_enforcers(beats, now)
    pending = tuple(enforcer for enforcer in alive if enforcer not in applied)
    complete = bool(applied) and not pending
    complete_at = None
    if complete:
        counted = [a.applied_at for a in applied.values() if a.enforcer_id in alive]
        complete_at = max(counted or (a.applied_at for a in applied.values()))
    return VersionPropagation(
        event=event,
        enforcers=tuple(sorted(applied.values(), key=lambda a: (a.applied_at, a.enforcer_id))),
        pending=pending,
        complete=complete,
        complete_at=complete_at,
    )


def next_change(pending: Iterable[str], beats: Sequence[Beat], now: datetime) -> timedelta | None:
    """How long until a pending enforcer stops counting as alive (so the answer changes
    with no event arriving); ``None`` when nothing is pending."""
    by_id = {beat.enforcer_id: beat for beat in beats}
    ends = [by_id[e].seen_at + ALIVE_FOR - now for e in pending if e in by_id]
    return max(timedelta(0), min(ends)) if ends else None
