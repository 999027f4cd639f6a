"""The enforcement service's HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from carveout_contracts.http import ApiError, Reader

from .domain import GrantView
from .handlers.grants import GrantIndex

router = APIRouter(prefix="/v1")


class GrantPeriodPublic(BaseModel):
    version: int
    status: str
    effective_at: datetime | None
    valid_from: datetime
    valid_until: datetime
    conditions: list[dict[str, Any]]


class GrantViewPublic(BaseModel):
    """A grant as enforcement sees it: its current state and every period it was in force."""

    grant_id: str
    carveout_id: str
    grantee_id: str
    model_id: str
    version: int
    status: str
    valid_from: datetime
    valid_until: datetime
    conditions: list[dict[str, Any]]
    breach_policy: dict[str, Any]
    periods: list[GrantPeriodPublic]
    updated_at: datetime

    @classmethod
    def of(cls, view: GrantView) -> GrantViewPublic:
        current = view.current.model_dump(mode="json")
        return cls.model_validate(
            {
                **view.model_dump(mode="json"),
                "version": view.version,
                "status": view.status,
                "valid_from": current["valid_from"],
                "valid_until": current["valid_until"],
                "conditions": current["conditions"],
            }
        )


@router.get("/grants/{grant_id}", response_model=GrantViewPublic)
async def get_grant(grant_id: str, request: Request, _: Reader) -> GrantViewPublic:
    """One grant from enforcement's projection (what decisions are judged against)."""
    index: GrantIndex = request.app.state.index
    view = index.get(grant_id)
    if view is None:
        raise ApiError(404, "not_found", f"enforcement knows no grant with id {grant_id!r}")
    return GrantViewPublic.of(view)
