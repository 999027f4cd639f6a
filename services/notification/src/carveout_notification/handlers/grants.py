"""Fold ``carveout.grants`` into the grant-contacts projection."""

from __future__ import annotations

from datetime import UTC, datetime

from carveout_contracts import GrantEvent, topics
from carveout_contracts.runtime import with_retries

from ..domain import affected_grants, apply
from ..store import NotificationStore


class ContactsProjector:
    def __init__(self, store: NotificationStore, retry_attempts: int) -> None:
        self.store = store
        self.retry_attempts = retry_attempts

    async def __call__(self, event: GrantEvent) -> None:
        changed = []
        for grant_id in affected_grants(event):
            before = self.store.get_contacts(grant_id)
            after = apply(before, event, grant_id)
            if after is not None and after is not before:
                changed.append(after)
        now = datetime.now(UTC)
        await with_retries(
            lambda: self.store.save_contacts(
                changed, event_id=str(event.event_id), topic=topics.GRANTS, at=now
            ),
            attempts=self.retry_attempts,
            what="saving grant contacts",
        )
