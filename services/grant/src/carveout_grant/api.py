"""The grant service's HTTP API (regulators issue and read grants)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from carveout_contracts import encode_token
from carveout_contracts.http import ApiError, Reader, Regulator

from .domain import Grant, GrantRequest, PublicStatus, apply, issue, new_grant_id
from .service import GrantService

router = APIRouter(prefix="/v1")
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


class GrantPublic(BaseModel):
    """A grant as the API shows it, with its status at the time of the answer."""

    grant_id: str
    carveout_id: str
    version: int
    status: PublicStatus
    grantee: dict[str, Any]
    model_id: str
    valid_from: datetime
    valid_until: datetime
    conditions: list[dict[str, Any]]
    breach_policy: dict[str, Any]
    issued_by: str
    issued_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, grant: Grant, now: datetime) -> GrantPublic:
        doc = grant.model_dump(mode="json", exclude={"lifecycle"})
        return cls.model_validate({**doc, "status": grant.status_at(now)})


class GrantIssuedAnswer(GrantPublic):
    event_id: str
    effective_at: datetime
    consistency_token: str
    published: bool


class GrantPage(BaseModel):
    items: list[GrantPublic]
    total: int
    limit: int
    offset: int


def valid_traceparent(request: Request) -> str | None:
    value = request.headers.get("traceparent", "")
    return value if TRACEPARENT.fullmatch(value) else None


def _service(request: Request) -> GrantService:
    service: GrantService = request.app.state.service
    return service


@router.post("/grants", status_code=201, response_model=GrantIssuedAnswer)
async def issue_grant(
    body: GrantRequest, request: Request, response: Response, role: Regulator
) -> GrantIssuedAnswer:
    """Issue a grant under a carveout (regulator)."""
    service = _service(request)
    now = datetime.now(UTC)
    event = issue(body, grant_id=new_grant_id(), by=role.value, now=now)
    grant = apply(None, event)
    published = await service.record([grant], event, valid_traceparent(request))
    response.headers["Location"] = f"/v1/grants/{grant.grant_id}"
    return GrantIssuedAnswer.model_validate(
        {
            **GrantPublic.of(grant, now).model_dump(),
            "event_id": str(event.event_id),
            "effective_at": event.occurred_at,
            "consistency_token": encode_token({grant.grant_id: grant.version}),
            "published": published,
        }
    )


@router.get("/grants/{grant_id}", response_model=GrantPublic)
async def get_grant(grant_id: str, request: Request, _: Reader) -> GrantPublic:
    """One grant, as the grant service (the system of record) holds it."""
    grant = _service(request).store.get(grant_id)
    if grant is None:
        raise ApiError(404, "not_found", f"no grant with id {grant_id!r}")
    return GrantPublic.of(grant, datetime.now(UTC))


@router.get("/grants", response_model=GrantPage)
async def list_grants(
    request: Request,
    _: Reader,
    grantee_id: str | None = None,
    carveout_id: str | None = None,
    status: PublicStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> GrantPage:
    """Grants, filtered by grantee, carveout and status, a page at a time."""
    now = datetime.now(UTC)
    grants, total = _service(request).store.find(
        now=now,
        grantee_id=grantee_id,
        carveout_id=carveout_id,
        status=status,
        limit=limit,
        offset=offset,
    )
    return GrantPage(
        items=[GrantPublic.of(g, now) for g in grants], total=total, limit=limit, offset=offset
    )
