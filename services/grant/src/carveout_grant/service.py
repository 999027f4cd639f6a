"""The grant service's unit of work: record a change and its event together, then relay it."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from carveout_contracts import Envelope, GrantEvent, affected_grants, codec, limits
from carveout_runtime.http import ApiError

from .domain import Grant, apply
from .partitions import GrantsPartitions
from .relay import OutboxRelay
from .store import GrantChange, GrantStore

log = logging.getLogger("carveout.grant")


class EventTooLarge(ApiError):
    """An action whose event would be larger than a record may be: refused (413)."""

    def __init__(self, event: Envelope, size: int, limit: int) -> None:
        super().__init__(
            413,
            "too_large",
            f"this action's {event.type} event would be {size} bytes encoded, over the "
            f"{limit}-byte limit on a record (CARVEOUT_RECORD_MAX_BYTES); "
            "make the grant's conditions or lists shorter",
        )
        self.size, self.limit = size, limit


def check_fits(event: Envelope, payload: str, limit: int) -> None:
    """Refuse an event whose encoded value the broker or a consumer would not take.

    Checked before anything is written: an event in the outbox that cannot be published
    would hold back every later one, revocations included.
    """
    size = len(payload.encode())
    if size > limit:
        raise EventTooLarge(event, size, limit)


class GrantService:
    def __init__(
        self,
        store: GrantStore,
        relay: OutboxRelay,
        relay_wait_seconds: float,
        record_max_bytes: int = limits.DEFAULT_RECORD_BYTES,
        partitions: GrantsPartitions | None = None,
    ) -> None:
        self.store = store
        self.partitions = partitions or GrantsPartitions()
        """How many partitions carveout.grants has: a carveout's revocation is announced
        once per partition its grants fall in."""
        self.relay = relay
        self.relay_wait_seconds = relay_wait_seconds
        self.record_max_bytes = record_max_bytes

    async def record(
        self,
        grants: Sequence[Grant],
        event: Envelope,
        traceparent: str | None = None,
        expected_versions: dict[str, int] | None = None,
    ) -> bool:
        """Commit the change with its event (outbox), then wait briefly for the relay.

        The event continues the caller's trace when it sent a valid W3C ``traceparent``.
        Returns whether the event reached the broker in time; if not, it is still
        recorded and the relay keeps trying, so nothing is lost. Raises
        :class:`EventTooLarge`, writing nothing, when the event could never be published.
        """
        check_fits(event, event.model_dump_json(), self.record_max_bytes)
        seq = self.store.record(
            grants, event, traceparent or codec.new_traceparent(), expected_versions
        )
        published = await self.relay.wait_published(seq, self.relay_wait_seconds)
        if not published:
            log.warning("event %s recorded but not yet published", event.event_id)
        return published

    async def act(
        self, before: Sequence[Grant], event: GrantEvent, traceparent: str | None = None
    ) -> tuple[list[Grant], bool]:
        """Apply a regulator action's event to the grants it concerns and record both."""
        concerned = affected_grants(event)
        after = [apply(g, event) for g in before if g.grant_id in concerned]
        published = await self.record(
            after, event, traceparent, expected_versions={g.grant_id: g.version for g in before}
        )
        return after, published

    async def act_all(
        self, before: Sequence[Grant], events: Sequence[GrantEvent], traceparent: str | None
    ) -> tuple[list[list[Grant]], bool]:
        """One action announced by several events (each for some of the grants ``before``
        it): every change recorded in one transaction; the grants after each event."""
        changes, afters = [], []
        trace = traceparent or codec.new_traceparent()
        for event in events:
            concerned = affected_grants(event)
            mine = [g for g in before if g.grant_id in concerned]
            after = [apply(g, event) for g in mine]
            check_fits(event, event.model_dump_json(), self.record_max_bytes)
            changes.append(GrantChange(after, event, trace, {g.grant_id: g.version for g in mine}))
            afters.append(after)
        seq = self.store.record_all(changes)
        published = await self.relay.wait_published(seq, self.relay_wait_seconds)
        return afters, published
