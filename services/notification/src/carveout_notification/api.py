"""The notification service's HTTP API."""

from __future__ import annotations

from fastapi import APIRouter, Request

from carveout_contracts.http import ApiError, Reader

from .domain import GrantContacts
from .store import NotificationStore

router = APIRouter(prefix="/v1")


@router.get("/grants/{grant_id}/contacts", response_model=GrantContacts)
async def grant_contacts(grant_id: str, request: Request, _: Reader) -> GrantContacts:
    """Who the notification service will tell about this grant."""
    store: NotificationStore = request.app.state.store
    contacts = store.get_contacts(grant_id)
    if contacts is None:
        raise ApiError(404, "not_found", f"notification knows no grant with id {grant_id!r}")
    return contacts
