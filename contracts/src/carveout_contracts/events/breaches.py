"""``carveout.breaches``: accesses that broke conditions. Produced by enforcement; keyed
by grant id (grantee id when no grant matched)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    Field,
    JsonValue,
    PositiveInt,
)

from .. import limits, topics
from ..common import (
    Frozen,
    Identifier,
    Severity,
    UtcDatetime,
)
from .envelope import Envelope

__all__ = ["BreachEvent", "ConditionBreached", "ConditionBreachedData", "Violation"]


class Violation(Frozen):
    """One condition an access broke, with what the grant expected and what it got."""

    condition_id: Annotated[str, Field(max_length=limits.MAX_ID)]
    kind: Annotated[str, Field(max_length=limits.MAX_ID)]
    severity: Severity
    expected: JsonValue = None
    actual: JsonValue = None


class ConditionBreachedData(Frozen):
    breach_id: Identifier
    grant_id: Identifier | None
    grant_version: PositiveInt | None
    grantee_id: Identifier
    model_id: Identifier
    access_event_id: UUID
    request_id: Identifier
    severity: Severity
    violations: list[Violation] = Field(min_length=1, max_length=limits.MAX_VIOLATIONS)
    access_occurred_at: UtcDatetime | None = None
    user_id: str | None = None
    gateway_id: str | None = None


class ConditionBreached(
    Envelope, topic=topics.BREACHES, key=lambda data: data.grant_id or data.grantee_id
):
    """An access broke one or more conditions, or had no grant in force.

    Produced by the enforcement service; keyed by grant id, or grantee id when no grant matched.
    """

    type: Literal["condition.breached"] = "condition.breached"
    version: Literal[1] = 1
    data: ConditionBreachedData


BreachEvent = Annotated[ConditionBreached, Field(discriminator="type")]
"""The events of ``carveout.breaches``."""
