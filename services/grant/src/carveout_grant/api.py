"""The grant service's HTTP API (regulators issue and read grants)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from carveout_contracts import GrantEvent, encode_token
from carveout_runtime import telemetry
from carveout_runtime.addresses import (
    email_address_problem,
)
from carveout_runtime.http import (
    ApiError,
    IdFilter,
    KnownQueryOnly,
    PageOffset,
    Reader,
    Regulator,
    check_webhook,
)

from .domain import (
    ActionRequest,
    AmendRequest,
    Grant,
    GrantConflict,
    GrantRequest,
    PublicStatus,
    amend,
    apply,
    issue,
    new_grant_id,
    reinstate,
    revoke,
    suspend,
)
from .service import GrantService
from .store import StaleGrant

router = APIRouter(prefix="/v1", dependencies=[KnownQueryOnly])
CONFLICT: dict[int | str, dict[str, Any]] = {409: {}}
"""Regulator actions answer 409 when the grant's state or version forbids them."""
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
    """The context the action's event continues: the request's span when tracing is on,
    else the caller's own valid ``traceparent``."""
    if traced := telemetry.inject():
        return traced
    value = request.headers.get("traceparent", "")
    return value if TRACEPARENT.fullmatch(value) else None


async def check_contacts(request: Request, body: GrantRequest) -> None:
    """422 for a contact Carveout will not write to: see ``carveout_runtime.addresses``."""
    for i, contact in enumerate(body.grantee.contacts):
        field = f"grantee.contacts.{i}.address"
        if contact.kind == "email" and (problem := email_address_problem(contact.address)):
            raise ApiError(422, "address_refused", f"{field}: {problem}")
        if contact.kind == "webhook":
            await check_webhook(request, contact.address, field)


def _service(request: Request) -> GrantService:
    service: GrantService = request.app.state.service
    return service


@router.post("/grants", status_code=201, response_model=GrantIssuedAnswer)
async def issue_grant(
    body: GrantRequest, request: Request, response: Response, role: Regulator
) -> GrantIssuedAnswer:
    """Issue a grant under a carveout (regulator)."""
    await check_contacts(request, body)
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
    grantee_id: IdFilter = None,
    carveout_id: IdFilter = None,
    status: PublicStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: PageOffset = 0,
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


class ActionAnswer(BaseModel):
    """What a regulator action did: the grant's new version and status, and the event."""

    grant_id: str
    version: int
    status: PublicStatus
    event_id: str
    event_type: str
    effective_at: datetime
    consistency_token: str
    published: bool


class CarveoutRevokedAnswer(BaseModel):
    carveout_id: str
    grants: list[ActionAnswer]
    event_id: str
    effective_at: datetime
    consistency_token: str
    published: bool


def _answers(grants: list[Grant], event: GrantEvent, published: bool) -> list[ActionAnswer]:
    now = datetime.now(UTC)
    token = encode_token({g.grant_id: g.version for g in grants})
    effective = getattr(event.data, "effective_at", event.occurred_at)
    return [
        ActionAnswer(
            grant_id=g.grant_id,
            version=g.version,
            status=g.status_at(now),
            event_id=str(event.event_id),
            event_type=event.type,
            effective_at=effective,
            consistency_token=token,
            published=published,
        )
        for g in grants
    ]


async def _act_on_grant(
    request: Request, grant_id: str, command: Callable[[Grant, datetime], GrantEvent]
) -> ActionAnswer:
    service = _service(request)
    grant = service.store.get(grant_id)
    if grant is None:
        raise ApiError(404, "not_found", f"no grant with id {grant_id!r}")
    try:
        event = command(grant, datetime.now(UTC))
        after, published = await service.act([grant], event, valid_traceparent(request))
    except GrantConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except StaleGrant as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return _answers(after, event, published)[0]


@router.post("/grants/{grant_id}/amend", response_model=ActionAnswer, responses=CONFLICT)
async def amend_grant(
    grant_id: str, body: AmendRequest, request: Request, role: Regulator
) -> ActionAnswer:
    """Replace a grant's validity, conditions and breach policy (regulator)."""
    return await _act_on_grant(
        request, grant_id, lambda g, now: amend(g, body, by=role.value, now=now)
    )


@router.post("/grants/{grant_id}/suspend", response_model=ActionAnswer, responses=CONFLICT)
async def suspend_grant(
    grant_id: str, body: ActionRequest, request: Request, role: Regulator
) -> ActionAnswer:
    """Suspend an active grant until reinstated (regulator)."""
    return await _act_on_grant(
        request, grant_id, lambda g, now: suspend(g, body.reason, by=role.value, now=now)
    )


@router.post("/grants/{grant_id}/reinstate", response_model=ActionAnswer, responses=CONFLICT)
async def reinstate_grant(
    grant_id: str, body: ActionRequest, request: Request, role: Regulator
) -> ActionAnswer:
    """Reinstate a suspended grant (regulator)."""
    return await _act_on_grant(
        request, grant_id, lambda g, now: reinstate(g, body.reason, by=role.value, now=now)
    )


@router.post("/grants/{grant_id}/revoke", response_model=ActionAnswer, responses=CONFLICT)
async def revoke_grant(
    grant_id: str, body: ActionRequest, request: Request, role: Regulator
) -> ActionAnswer:
    """Revoke one grant for good (regulator). Announced as ``carveout.revoked``."""
    return await _act_on_grant(
        request,
        grant_id,
        lambda g, now: revoke([g], body.reason, carveout_id=g.carveout_id, by=role.value, now=now),
    )


@router.post(
    "/carveouts/{carveout_id}/revoke", response_model=CarveoutRevokedAnswer, responses=CONFLICT
)
async def revoke_carveout(
    carveout_id: str, body: ActionRequest, request: Request, role: Regulator
) -> CarveoutRevokedAnswer:
    """Revoke a whole carveout: every grant under it, in one event (regulator)."""
    service = _service(request)
    grants = service.store.of_carveout(carveout_id)
    if not grants:
        raise ApiError(404, "not_found", f"no grants under carveout {carveout_id!r}")
    live = [g for g in grants if g.lifecycle != "revoked"]
    try:
        event = revoke(
            live, body.reason, carveout_id=carveout_id, by=role.value, now=datetime.now(UTC)
        )
        after, published = await service.act(live, event, valid_traceparent(request))
    except (GrantConflict, StaleGrant) as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    answers = _answers(after, event, published)
    return CarveoutRevokedAnswer(
        carveout_id=carveout_id,
        grants=answers,
        event_id=str(event.event_id),
        effective_at=event.data.effective_at,
        consistency_token=answers[0].consistency_token,
        published=published,
    )
