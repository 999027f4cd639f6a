"""The enforcement service's HTTP API."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from carveout_contracts import AccessRecorded, AccessRecordedData, codec, topics
from carveout_contracts.common import Identifier, UtcDatetime
from carveout_runtime.auth import Caller, bound_gateway_id
from carveout_runtime.http import (
    ApiError,
    Gateway,
    GrantViewer,
    IdFilter,
    KnownQueryOnly,
    PageOffset,
    QueryTime,
    Reader,
)

from .decision.decide import DecisionAnswer
from .decision.wire import DecisionRequest, occurred_at_error
from .deps import Context, Grants, Store
from .domain import GrantView
from .store import BreachRecord, DecisionRecord, from_micros

router = APIRouter(prefix="/v1", dependencies=[KnownQueryOnly])


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
async def get_grant(grant_id: str, grants: Grants, _: GrantViewer) -> GrantViewPublic:
    """One grant from enforcement's projection (what decisions are judged against)."""
    view = grants.get(grant_id)
    if view is None:
        raise ApiError(404, "not_found", f"enforcement knows no grant with id {grant_id!r}")
    return GrantViewPublic.of(view)


@router.post("/decisions", response_model=DecisionAnswer)
async def decide(body: DecisionRequest, gateway: Gateway) -> DecisionAnswer:
    """Allow or deny an access now, from memory. Records nothing: access events are the record.

    Fails closed (``deny``, kind ``stale``) when enforcement cannot show it is caught up on
    the grants log, or has not applied the action named by ``min_consistency`` in time.
    """
    # Declared for the API's document (its body, answers and roles). The requests are
    # answered by decision.endpoint.DecisionEndpoint, which app.py installs ahead of the
    # framework: this is never reached.
    raise RuntimeError("POST /v1/decisions is answered by the DecisionEndpoint app.py installs")


class AccessIn(AccessRecordedData):
    """One access to record: the ``access.recorded`` data, optionally with when it happened
    and an event id (a gateway re-sending the same id records the access once).
    ``gateway_id`` may be left out by a named gateway token: its name is the id."""

    gateway_id: Identifier | None = None  # type: ignore[assignment]
    occurred_at: UtcDatetime | None = None
    event_id: uuid.UUID | None = None


def _bind_gateway(gateway: Caller, items: list[AccessIn], body: Any) -> list[AccessIn]:
    """Each access carries its gateway's id: a named gateway token's name (filled in when
    left out, 403 when another), else the id the gateway gives, which is then required."""
    bound, missing = [], []
    for n, item in enumerate(items):
        gateway_id = bound_gateway_id(gateway, item.gateway_id)
        if gateway_id is None:
            loc = ("body", "gateway_id") if items is not body else ("body", n, "gateway_id")
            missing.append({"loc": loc, "msg": "Field required", "type": "missing"})
        bound.append(item.model_copy(update={"gateway_id": gateway_id}))
    if missing:
        raise RequestValidationError(missing)
    return bound


class AccessAccepted(BaseModel):
    accepted: int
    event_ids: list[str]


@router.post("/access", status_code=202, response_model=AccessAccepted)
async def record_access(
    request: Request,
    gateway: Gateway,
    context: Context,
    body: Annotated[AccessIn | list[AccessIn], Body()],
) -> AccessAccepted:
    """Publish access events to ``carveout.access`` for gateways without a Kafka client."""
    items = _bind_gateway(gateway, body if isinstance(body, list) else [body], body)
    if len(items) > 10_000:
        raise ApiError(413, "too_large", "at most 10000 access events per request")
    # Every item is checked before any is published: a refused batch publishes nothing.
    now, skew = context.clock(), context.settings.max_future_skew_seconds
    for n, item in enumerate(items):
        at = ("body", n) if isinstance(body, list) else ("body",)
        error = occurred_at_error(item.occurred_at, now, skew, (*at, "occurred_at"))
        if error is not None:
            raise RequestValidationError([error])
    received = datetime.fromtimestamp(now, UTC)  # when an access says nothing else
    broker = context.broker
    pending = []
    ids = []
    for item in items:
        data = AccessRecordedData.model_validate(
            item.model_dump(exclude={"occurred_at", "event_id"})
        )
        event = AccessRecorded(
            event_id=item.event_id or uuid.uuid4(),
            occurred_at=item.occurred_at or received,
            producer=data.gateway_id,
            key=data.grantee_id,
            data=data,
        )
        pending.append(
            await broker.publish(
                codec.encode_value(event),
                topics.ACCESS,
                key=event.key.encode(),
                headers=dict(codec.text_headers(request.headers.get("traceparent"))),
                no_confirm=True,
            )
        )
        ids.append(str(event.event_id))
    for sent in pending:
        if sent is not None:
            await sent
    return AccessAccepted(accepted=len(ids), event_ids=ids)


class DecisionPublic(BaseModel):
    access_event_id: str
    request_id: str
    grantee_id: str
    model_id: str
    grant_id: str | None
    grant_version: int | None
    decision: str
    violations: list[dict[str, Any]]
    occurred_at: datetime
    judged_at: datetime
    user_id: str
    gateway_id: str
    units: int


class DecisionPage(BaseModel):
    items: list[DecisionPublic]
    total: int


class BreachPage(BaseModel):
    items: list[dict[str, Any]]
    total: int


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A listing's query: by grantee, grant and time range (``since``/``until``), a page."""

    grantee_id: IdFilter = None
    grant_id: IdFilter = None
    since: QueryTime = None
    until: QueryTime = None
    limit: Annotated[int, Query(ge=1, le=1000)] = 100
    offset: PageOffset = 0


Page = Annotated[PageQuery, Depends()]


@router.get("/decisions", response_model=DecisionPage)
async def list_decisions(store: Store, _: Reader, query: Page) -> DecisionPage:
    """Judged accesses, newest first, by grantee, grant and time range (``since``/``until``)."""
    page = store.page(DecisionRecord, **asdict(query))
    items = [
        DecisionPublic.model_validate(
            {
                **row.model_dump(),
                "violations": orjson.loads(row.violations),
                "occurred_at": from_micros(row.occurred_at),
                "judged_at": from_micros(row.judged_at),
            }
        )
        for row in page.items
    ]
    return DecisionPage(items=items, total=page.total)


@router.get("/breaches", response_model=BreachPage)
async def list_breaches(store: Store, _: Reader, query: Page) -> BreachPage:
    """Breaches, newest first, as published on ``carveout.breaches``."""
    page = store.page(BreachRecord, **asdict(query))
    events = [(orjson.loads(row.payload), row.published_at) for row in page.items]
    items = [
        {**event["data"], "event_id": event["event_id"], "published": published is not None}
        for event, published in events
    ]
    return BreachPage(items=items, total=page.total)
