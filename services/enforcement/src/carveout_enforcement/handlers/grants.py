"""Fold ``carveout.grants`` into the grant projection: load, apply, save, then index."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import Histogram

from carveout_contracts import CarveoutRevoked, GrantEvent, GrantSuspended, topics
from carveout_contracts.common import utcnow
from carveout_runtime.consumers import SEEN, Seen
from carveout_runtime.inbound import Inbound
from carveout_runtime.retries import wait_set, with_retries

from ..domain import GrantView, affected_grants, apply
from ..judge import CompiledGrant, compile_grant
from ..store import EnforcementStore

log = logging.getLogger("carveout.enforcement.grants")
PROPAGATION = Histogram(
    "carveout_revocation_propagation_seconds",
    "From a suspension's or revocation's effective_at to its taking effect in enforcement's "
    "in-memory grants (decisions deny from then on).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


class GrantIndex:
    """Every grant's view, and its compiled form, in memory, by id and by (grantee, model)."""

    def __init__(self, views: Sequence[GrantView] = ()) -> None:
        self.by_id: dict[str, GrantView] = {}
        self.by_grantee_model: dict[tuple[str, str], list[CompiledGrant]] = {}
        self.newest_issue_ms = -math.inf
        self._changed = asyncio.Event()
        for view in views:
            self.put(view)

    def put(self, view: GrantView) -> None:
        compiled = compile_grant(view)
        grants = self.by_grantee_model.setdefault((view.grantee_id, view.model_id), [])
        if view.grant_id in self.by_id:
            grants[:] = [compiled if g.grant_id == view.grant_id else g for g in grants]
        else:
            # Kept in grant-id order (ids sort by issue time), so judging never depends on
            # the order grants happened to be loaded or consumed in.
            grants.append(compiled)
            grants.sort(key=lambda g: g.grant_id)
        self.by_id[view.grant_id] = view
        self.newest_issue_ms = max(self.newest_issue_ms, compiled.issued_ms)
        self._changed.set()
        self._changed = asyncio.Event()

    def get(self, grant_id: str) -> GrantView | None:
        return self.by_id.get(grant_id)

    def candidates(self, grantee_id: str, model_id: str) -> list[CompiledGrant]:
        return self.by_grantee_model.get((grantee_id, model_id), [])

    def candidates_received_by(
        self, grantee_id: str, model_id: str, appended_ms: int | None
    ) -> list[CompiledGrant]:
        """The grants of a grantee and model the log received before ``appended_ms``."""
        grants = self.by_grantee_model.get((grantee_id, model_id), [])
        if appended_ms is None or appended_ms >= self.newest_issue_ms:
            return grants
        return [g for g in grants if g.issued_ms <= appended_ms]

    def has_applied(self, versions: dict[str, int]) -> bool:
        return all(
            (view := self.by_id.get(grant_id)) is not None and view.version >= version
            for grant_id, version in versions.items()
        )

    async def wait_for(self, versions: dict[str, int], within_s: float) -> bool:
        """Wait until every named grant is at least at its version."""
        deadline = asyncio.get_running_loop().time() + within_s
        while not self.has_applied(versions):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await wait_set(self._changed, remaining)
        return True


def never_seen(event_id: str) -> bool:
    """The grants consumer's dedupe: none before the projector, which tells a repeat by
    the projection in memory (a replica sharing the store may have recorded an event this
    one has still to apply)."""
    return False


@dataclass
class GrantProjector:
    """Folds each grant event into the projection: memory first, then the store."""

    store: EnforcementStore
    index: GrantIndex
    retry_attempts: int
    on_applied: Callable[[Inbound], None] | None = None
    on_versions: Callable[[GrantEvent, Sequence[GrantView], Inbound], None] | None = None
    """Told of the versions an event made, once decisions reflect them (acknowledgements)."""
    clock: Callable[[], datetime] = utcnow
    _unsaved: dict[str, tuple[GrantView, str]] = field(default_factory=dict, init=False)
    """Views in memory whose store write failed, with the event that changed them:
    written when that event is tried again."""

    async def __call__(self, event: GrantEvent, inbound: Inbound) -> Seen | None:
        event_id = str(event.event_id)
        changed = []
        for grant_id in affected_grants(event):
            view = apply(self.index.get(grant_id), event, grant_id, inbound.appended_ms)
            if view is None:
                log.warning("%s names grant %s, never issued here; skipped", event.type, grant_id)
            elif view is not self.index.get(grant_id):
                changed.append(view)
        # Memory first: decisions reflect a revocation the moment it arrives, never after a
        # store write queued behind a batch of accesses. Applying a version is idempotent,
        # so if the write below fails the redelivered event changes memory no further.
        for view in changed:
            self.index.put(view)
        if changed and self.on_versions is not None:
            self.on_versions(event, changed, inbound)
        if changed and isinstance(event, GrantSuspended | CarveoutRevoked):
            applied = self.clock()
            PROPAGATION.observe(max(0.0, (applied - event.data.effective_at).total_seconds()))
        if self.on_applied is not None:
            self.on_applied(inbound)  # what decisions see is what counts as applied
        if not changed and not self._unsaved:
            recorded = await with_retries(
                lambda: self.store.is_processed(event_id),
                attempts=self.retry_attempts,
                health=inbound.health,
                what="checking the grant projection",
                in_thread=True,
            )
            if recorded:
                return SEEN  # seen before, here or by a replica sharing the store
        now = self.clock()
        # A redelivered event changes memory no further, so what a failed write left out
        # is written when it is tried again. Views another event left unsaved belong to a
        # record that was set aside (dead-lettered ``failed``): written with this event,
        # they would make it fail too, and every event after it.
        left = [grant_id for grant_id, (_, by) in self._unsaved.items() if by != event_id]
        if left:
            log.error("grants %s of a record set aside stay in memory only, unsaved", left)
            for grant_id in left:
                del self._unsaved[grant_id]
        for view in changed:
            self._unsaved[view.grant_id] = (view, event_id)
        pending = [
            self.index.get(grant_id) or view for grant_id, (view, _) in self._unsaved.items()
        ]
        await with_retries(
            lambda: self.store.save_grants(pending, event_id=event_id, topic=topics.GRANTS, at=now),
            attempts=self.retry_attempts,
            health=inbound.health,
            what="saving the grant projection",
            in_thread=True,
        )
        self._unsaved.clear()
        return None
