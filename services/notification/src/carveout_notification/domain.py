"""Who is to be told about each grant: a pure projection of grant events."""

from __future__ import annotations

from typing import Literal

from carveout_contracts import (
    CarveoutRevoked,
    Contact,
    GrantEvent,
    GrantIssued,
    GrantReinstated,
    GrantSuspended,
)
from carveout_contracts.common import Frozen, UtcDatetime

Lifecycle = Literal["active", "suspended", "revoked"]


class GrantContacts(Frozen):
    grant_id: str
    carveout_id: str
    grantee_id: str
    grantee_name: str
    model_id: str
    status: Lifecycle
    version: int
    contacts: list[Contact]
    updated_at: UtcDatetime


def affected_grants(event: GrantEvent) -> list[str]:
    if isinstance(event, CarveoutRevoked):
        return list(event.data.grant_ids)
    return [event.data.grant_id]


def apply(view: GrantContacts | None, event: GrantEvent, grant_id: str) -> GrantContacts | None:
    """Fold one grant event into grant ``grant_id``'s contacts. Pure: no I/O, no clock."""
    if isinstance(event, GrantIssued):
        if view is not None:
            return view  # issued once; a repeat must never reset later versions
        d = event.data
        return GrantContacts(
            grant_id=d.grant_id,
            carveout_id=d.carveout_id,
            grantee_id=d.grantee.id,
            grantee_name=d.grantee.name,
            model_id=d.model_id,
            status="active",
            version=d.version,
            contacts=d.grantee.contacts,
            updated_at=event.occurred_at,
        )
    if view is None:
        return None
    if view.status == "revoked":
        return view  # revocation is final
    if isinstance(event, CarveoutRevoked):
        version = event.data.grant_versions.get(grant_id, view.version + 1)
        status: Lifecycle = "revoked"
    else:
        version = event.data.version
        status = (
            "suspended"
            if isinstance(event, GrantSuspended)
            else "active"
            if isinstance(event, GrantReinstated)
            else view.status
        )
    if version <= view.version:
        return view
    return view.model_copy(
        update={"version": version, "status": status, "updated_at": event.occurred_at}
    )
