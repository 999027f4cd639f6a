"""The grant service's HTTP API (regulators issue and read grants)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from carveout_contracts import GrantEvent, encode_token
from carveout_runtime.addresses import email_address_problem
from carveout_runtime.http import (
    ApiError,
    IdFilter,
    KnownQueryOnly,
    PageOffset,
    Reader,
)

from .deps import Action, CheckWebhook, Grants, Now, RegulatorAction, WebhookCheck
from .domain import (
    Grant,
    GrantConflict,
    GrantRequest,
    PublicStatus,
    amend,
    apply,
    issue,
    new_grant_id,
    reinstate,
    revoke_grant,
    revoke_in_parts,
    suspend,
)
from .propagation_api import (
    ActionBody,
    AmendBody,
    IssueBody,
    Propagations,
    VersionPropagationAnswer,
    WaitForApplied,
    wait_for_applied,
)
from .propagation_api import router as propagation_router
from .propagation_book import PropagationBook
from .store import GrantListing, StaleGrant

router = APIRouter(prefix="/v1", dependencies=[KnownQueryOnly])
CONFLICT: dict[int | str, dict[str, Any]] = {409: {}}
"""Regulator actions answer 409 when the grant's state or version forbids them."""
WAITED = "With wait 'applied': how far the new version has reached enforcement (else null)."
APPENDED = (
    "When the grants log received the event (null while it has not: published is false); "
    "from this instant enforcement can know of the action, which is in force from effective_at."
)


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


class ActionOutcome(BaseModel):
    """What every regulator action answers of the event it made: when it took effect, when
    the log received it, and the token to ask enforcement for it."""

    event_id: str
    effective_at: datetime
    appended_at: datetime | None = Field(None, description=APPENDED)
    consistency_token: str
    published: bool
    propagation: VersionPropagationAnswer | None = Field(None, description=WAITED)


class GrantIssuedAnswer(ActionOutcome, GrantPublic):
    """The grant issued (its fields first), and the outcome of issuing it."""


class GrantPage(BaseModel):
    items: list[GrantPublic]
    total: int
    limit: int
    offset: int


async def check_contacts(body: GrantRequest, check_webhook: CheckWebhook) -> None:
    """422 for a contact Carveout will not write to: see ``carveout_runtime.addresses``."""
    for i, contact in enumerate(body.grantee.contacts):
        field = f"grantee.contacts.{i}.address"
        if contact.kind == "email" and (problem := email_address_problem(contact.address)):
            raise ApiError(422, "address_refused", f"{field}: {problem}")
        if contact.kind == "webhook":
            await check_webhook(contact.address, field)


@router.post("/grants", status_code=201, response_model=GrantIssuedAnswer)
async def issue_grant(
    body: IssueBody,
    response: Response,
    action: Action,
    webhooks: WebhookCheck,
    book: Propagations,
) -> GrantIssuedAnswer:
    """Issue a grant under a carveout (regulator); with ``"wait": "applied"``, answer once
    every live enforcement replica applies it (or after ``wait_seconds``)."""
    await check_contacts(body, webhooks)
    event = issue(body.request(), grant_id=new_grant_id(), by=action.by, now=action.now)
    grant = apply(None, event)
    published = await action.service.record([grant], event, action.trace)
    propagation = await wait_for_applied(book, {grant.grant_id: grant.version}, body)
    response.headers["Location"] = f"/v1/grants/{grant.grant_id}"
    return GrantIssuedAnswer.model_validate(
        {
            **GrantPublic.of(grant, action.now).model_dump(),
            "event_id": str(event.event_id),
            "effective_at": event.occurred_at,
            "appended_at": book.store.appended_at_of(str(event.event_id)),
            "consistency_token": encode_token({grant.grant_id: grant.version}),
            "published": published,
            "propagation": propagation.get(grant.grant_id) if propagation else None,
        }
    )


def _found(grant: Grant | None, grant_id: str) -> Grant:
    if grant is None:
        raise ApiError(404, "not_found", f"no grant with id {grant_id!r}")
    return grant


@router.get("/grants/{grant_id}", response_model=GrantPublic)
async def get_grant(grant_id: str, _: Reader, service: Grants, now: Now) -> GrantPublic:
    """One grant, as the grant service (the system of record) holds it."""
    return GrantPublic.of(_found(service.store.get(grant_id), grant_id), now)


async def grant_listing(
    grantee_id: IdFilter = None,
    carveout_id: IdFilter = None,
    status: PublicStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: PageOffset = 0,
) -> GrantListing:
    """A listing's query parameters."""
    return GrantListing(grantee_id, carveout_id, status, limit, offset)


@router.get("/grants", response_model=GrantPage)
async def list_grants(
    _: Reader,
    listing: Annotated[GrantListing, Depends(grant_listing)],
    service: Grants,
    now: Now,
) -> GrantPage:
    """Grants, filtered by grantee, carveout and status, a page at a time."""
    grants, total = service.store.find(listing, now)
    items = [GrantPublic.of(g, now) for g in grants]
    return GrantPage(items=items, total=total, limit=listing.limit, offset=listing.offset)


class ActedOn(BaseModel):
    """The grant a regulator action changed, as it is after it."""

    grant_id: str
    version: int
    status: PublicStatus


class ActionAnswer(ActionOutcome, ActedOn):
    """What a regulator action did: the grant's new version and status, and the event."""

    event_type: str


class CarveoutRevokedAnswer(BaseModel):
    carveout_id: str
    grants: list[ActionAnswer]
    event_id: str = Field(description="The first of ``event_ids``.")
    event_ids: list[str] = Field(
        description="The carveout.revoked events announcing it: one per partition of "
        "carveout.grants its grants fall in, so each grant's versions stay in order."
    )
    effective_at: datetime
    appended_at: datetime | None = Field(None, description=APPENDED)
    consistency_token: str
    published: bool
    propagation: dict[str, VersionPropagationAnswer] | None = Field(
        None, description="With wait 'applied': each revoked grant's propagation, by grant id."
    )


def _answers(
    grants: list[Grant], event: GrantEvent, published: bool, now: datetime
) -> list[ActionAnswer]:
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


async def _order(
    action: RegulatorAction, before: list[Grant], command: Callable[[], GrantEvent]
) -> tuple[GrantEvent, list[Grant], bool]:
    """Order ``command`` on the grants ``before`` it and record its event with the grants
    after it; 409 when their state or version forbids it."""
    try:
        event = command()
        after, published = await action.service.act(before, event, action.trace)
    except (GrantConflict, StaleGrant) as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return event, after, published


async def _act_on_grant(
    action: RegulatorAction,
    grant_id: str,
    command: Callable[[Grant], GrantEvent],
    book: PropagationBook,
    wait: WaitForApplied,
) -> ActionAnswer:
    grant = _found(action.service.store.get(grant_id), grant_id)
    event, after, published = await _order(action, [grant], lambda: command(grant))
    [answer] = _answers(after, event, published, action.now)
    propagation = await wait_for_applied(book, {grant_id: answer.version}, wait)
    if propagation:
        answer.propagation = propagation.get(grant_id)
    answer.appended_at = book.store.appended_at_of(answer.event_id)
    return answer


@router.post("/grants/{grant_id}/amend", response_model=ActionAnswer, responses=CONFLICT)
async def amend_grant(
    grant_id: str, body: AmendBody, action: Action, book: Propagations
) -> ActionAnswer:
    """Replace a grant's validity, conditions and breach policy (regulator)."""
    terms = body.request()
    return await _act_on_grant(
        action,
        grant_id,
        lambda grant: amend(grant, terms, by=action.by, now=action.now),
        book,
        body,
    )


class ReasonedCommand(Protocol):
    """A regulator's command on one grant that takes only a reason."""

    def __call__(self, grant: Grant, reason: str, *, by: str, now: datetime) -> GrantEvent: ...


def _reasoned_action(command: ReasonedCommand) -> Callable[..., Awaitable[ActionAnswer]]:
    """The route of a :class:`ReasonedCommand`: a reason in, the action's answer out."""

    async def act(
        grant_id: str, body: ActionBody, action: Action, book: Propagations
    ) -> ActionAnswer:
        return await _act_on_grant(
            action,
            grant_id,
            lambda grant: command(grant, body.reason, by=action.by, now=action.now),
            book,
            body,
        )

    return act


REASONED_ACTIONS: tuple[tuple[str, ReasonedCommand, str], ...] = (
    ("suspend", suspend, "Suspend an active grant until reinstated (regulator)."),
    ("reinstate", reinstate, "Reinstate a suspended grant (regulator)."),
    (
        "revoke",
        revoke_grant,
        "Revoke one grant for good (regulator). Announced as ``carveout.revoked``.",
    ),
)
"""The actions on one grant whose body is a reason: one route each, alike but for the
command (``POST /v1/grants/{grant_id}/suspend``, ``/reinstate``, ``/revoke``)."""

for verb, reasoned, description in REASONED_ACTIONS:
    router.add_api_route(
        f"/grants/{{grant_id}}/{verb}",
        _reasoned_action(reasoned),
        methods=["POST"],
        name=f"{verb}_grant",
        description=description,
        response_model=ActionAnswer,
        responses=CONFLICT,
    )


@router.post(
    "/carveouts/{carveout_id}/revoke", response_model=CarveoutRevokedAnswer, responses=CONFLICT
)
async def revoke_carveout(
    carveout_id: str, body: ActionBody, action: Action, book: Propagations
) -> CarveoutRevokedAnswer:
    """Revoke a whole carveout: every grant under it, with one event per partition of
    ``carveout.grants`` its grants fall in (regulator). With ``"wait": "applied"``, answer
    once every live enforcement replica applies each revoked grant's new version (or after
    ``wait_seconds``): ``propagation`` maps grant id to it."""
    grants = action.service.store.of_carveout(carveout_id)
    if not grants:
        raise ApiError(404, "not_found", f"no grants under carveout {carveout_id!r}")
    live = [g for g in grants if g.lifecycle != "revoked"]
    try:
        events = revoke_in_parts(
            live,
            body.reason,
            carveout_id=carveout_id,
            by=action.by,
            now=action.now,
            partition_of=action.service.partitions.of,
        )
        afters, published = await action.service.act_all(live, events, action.trace)
    except (GrantConflict, StaleGrant) as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    answers = [
        answer
        for event, after in zip(events, afters, strict=True)
        for answer in _answers(after, event, published, action.now)
    ]
    token = encode_token({a.grant_id: a.version for a in answers})
    propagation = await wait_for_applied(book, {a.grant_id: a.version for a in answers}, body)
    for answer in answers:
        answer.propagation = (propagation or {}).get(answer.grant_id)
        answer.appended_at = book.store.appended_at_of(answer.event_id)
        answer.consistency_token = token
    return CarveoutRevokedAnswer(
        carveout_id=carveout_id,
        grants=answers,
        event_id=answers[0].event_id,
        event_ids=[str(event.event_id) for event in events],
        effective_at=answers[0].effective_at,
        appended_at=answers[0].appended_at,
        consistency_token=token,
        published=published,
        propagation=propagation,
    )


router.include_router(propagation_router)
