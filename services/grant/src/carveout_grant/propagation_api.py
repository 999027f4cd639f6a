"""Propagation over HTTP: ``GET /v1/grants/{grant_id}/propagation`` and what a regulator
action adds to its answer with ``"wait": "applied"`` (DESIGN §12)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from carveout_runtime.http import ApiError, Reader

from .deps import Context
from .domain import ActionRequest, AmendRequest, GrantRequest
from .propagation import VersionPropagation
from .propagation_book import GrantPropagation, PropagationBook

MAX_WAIT_SECONDS = 30.0
"""Longest a regulator action may wait for its version to be applied everywhere."""
DEFAULT_WAIT_SECONDS = 2.0

router = APIRouter()


class WaitForApplied(BaseModel):
    """What a regulator action's body may add to answer only once its change is applied."""

    wait: Literal["applied"] | None = Field(
        None,
        description="'applied': answer once every live enforcement replica has applied the "
        "new version (or after wait_seconds), with its propagation under 'propagation'.",
    )
    wait_seconds: float = Field(
        DEFAULT_WAIT_SECONDS,
        gt=0,
        le=MAX_WAIT_SECONDS,
        strict=True,  # a JSON number: neither true nor "3" is a number of seconds
        description=f"With wait: the longest to wait, in seconds (at most {MAX_WAIT_SECONDS:g}).",
    )


class IssueBody(GrantRequest, WaitForApplied):
    """A grant to issue, and whether to answer once enforcement applies it."""

    def request(self) -> GrantRequest:
        return GrantRequest.model_validate(dict(self))


class AmendBody(AmendRequest, WaitForApplied):
    """A grant's complete new terms and why, and whether to answer once applied."""

    def request(self) -> AmendRequest:
        return AmendRequest.model_validate(dict(self))


class ActionBody(ActionRequest, WaitForApplied):
    """Why a regulator suspends, reinstates or revokes, and whether to answer once
    enforcement applies it."""


class EnforcerApplied(BaseModel):
    enforcer_id: str
    applied_at: datetime = Field(
        description="When the enforcer's decisions started reflecting the version; shown by "
        "a heartbeat (via), the time of the first heartbeat past it: at the latest then."
    )
    via: Literal["ack", "heartbeat"]


class VersionPropagationAnswer(BaseModel):
    """One version of a grant: when it took effect, when the log received it, and which
    enforcement replicas have applied it."""

    version: int
    event_id: str
    event_type: str
    effective_at: datetime
    appended_at: datetime | None = Field(
        description="When the grants log received the event (null until it has)."
    )
    enforcers: list[EnforcerApplied]
    pending: list[str] = Field(description="Live enforcement replicas not applying it yet.")
    complete: bool = Field(description="Applied by at least one replica and every live one.")
    complete_at: datetime | None

    @classmethod
    def of(cls, answer: VersionPropagation) -> VersionPropagationAnswer:
        event = answer.event
        return cls(
            version=event.version,
            event_id=event.event_id,
            event_type=event.event_type,
            effective_at=event.effective_at,
            appended_at=event.position.appended_at if event.position else None,
            enforcers=[
                EnforcerApplied(enforcer_id=a.enforcer_id, applied_at=a.applied_at, via=a.via)
                for a in answer.enforcers
            ],
            pending=list(answer.pending),
            complete=answer.complete,
            complete_at=answer.complete_at,
        )


class GrantPropagationAnswer(BaseModel):
    grant_id: str
    as_of: datetime = Field(description="The time liveness was judged at.")
    alive: list[str] = Field(description="Enforcement replicas with a heartbeat under 3 s old.")
    versions: list[VersionPropagationAnswer] = Field(description="Oldest first.")
    total_versions: int

    @classmethod
    def of(cls, found: GrantPropagation) -> GrantPropagationAnswer:
        return cls(
            grant_id=found.grant_id,
            as_of=found.as_of,
            alive=found.alive,
            versions=[VersionPropagationAnswer.of(v) for v in found.versions],
            total_versions=found.total_versions,
        )


async def propagation_book(context: Context) -> PropagationBook:
    if context.propagation is None:
        raise RuntimeError("this grant app has no propagation book: build it with create_app")
    return context.propagation


Propagations = Annotated[PropagationBook, Depends(propagation_book)]


@router.get("/grants/{grant_id}/propagation", response_model=GrantPropagationAnswer)
async def grant_propagation(
    grant_id: str,
    _: Reader,
    book: Propagations,
    newest: Annotated[int, Query(ge=1, le=1000, description="How many latest versions.")] = 100,
) -> GrantPropagationAnswer:
    """For each version of a grant (the newest ``newest``), whether every live enforcement
    replica applies it yet, and since when (regulator, auditor)."""
    found = book.of_grant(grant_id, newest)
    if found is None:
        raise ApiError(404, "not_found", f"no grant with id {grant_id!r}")
    return GrantPropagationAnswer.of(found)


async def wait_for_applied(
    book: PropagationBook, versions: Mapping[str, int], options: WaitForApplied
) -> dict[str, VersionPropagationAnswer] | None:
    """With ``"wait": "applied"``: each grant version's propagation once complete, or as
    it stands after ``wait_seconds``; without it, ``None`` (the action does not wait)."""
    if options.wait != "applied":
        return None
    found = await book.wait_applied(versions, options.wait_seconds)
    return {g: VersionPropagationAnswer.of(p) for g, p in found.items() if p is not None}
