"""Fold ``carveout.grants`` into the grant projection: load, apply, save, then index."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from carveout_contracts import GrantEvent, topics
from carveout_contracts.runtime import with_retries

from ..domain import GrantView, affected_grants, apply
from ..store import EnforcementStore

log = logging.getLogger("carveout.enforcement.grants")


class GrantIndex:
    """Every grant's view, in memory, by id and by (grantee, model)."""

    def __init__(self, views: Sequence[GrantView] = ()) -> None:
        self.by_id: dict[str, GrantView] = {}
        self.by_grantee_model: dict[tuple[str, str], list[str]] = {}
        for view in views:
            self.put(view)

    def put(self, view: GrantView) -> None:
        if view.grant_id not in self.by_id:
            ids = self.by_grantee_model.setdefault((view.grantee_id, view.model_id), [])
            ids.append(view.grant_id)
        self.by_id[view.grant_id] = view

    def get(self, grant_id: str) -> GrantView | None:
        return self.by_id.get(grant_id)


class GrantProjector:
    def __init__(self, store: EnforcementStore, index: GrantIndex, retry_attempts: int) -> None:
        self.store = store
        self.index = index
        self.retry_attempts = retry_attempts

    async def __call__(self, event: GrantEvent) -> None:
        changed = []
        for grant_id in affected_grants(event):
            view = apply(self.index.get(grant_id), event, grant_id)
            if view is None:
                log.warning("%s names grant %s, never issued here; skipped", event.type, grant_id)
            elif view is not self.index.get(grant_id):
                changed.append(view)
        now = datetime.now(UTC)
        await with_retries(
            lambda: self.store.save_grants(
                changed, event_id=str(event.event_id), topic=topics.GRANTS, at=now
            ),
            attempts=self.retry_attempts,
            what="saving the grant projection",
        )
        for view in changed:
            self.index.put(view)
