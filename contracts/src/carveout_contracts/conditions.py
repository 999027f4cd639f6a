"""The conditions a grant attaches to a carveout, and the breach policy."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from . import limits
from .common import MAX_UNITS, CountryCode, Frozen, Identifier, ListString, Severity

__all__ = [
    "CONDITION_KINDS",
    "BreachPolicy",
    "Condition",
    "DeploymentRegions",
    "Purposes",
    "Safeguards",
    "UsageCap",
    "UserCountries",
    "check_unique_condition_ids",
]

CountryList = Annotated[list[CountryCode], Field(min_length=1, max_length=limits.MAX_LIST_VALUES)]
ValueList = Annotated[list[ListString], Field(min_length=1, max_length=limits.MAX_LIST_VALUES)]
"""A condition's ``allow``/``deny``/``require`` list: 1 to 256 values of up to 200 characters."""
Threshold = Annotated[int, Field(ge=1, le=limits.MAX_POLICY_THRESHOLD)]


class _Condition(Frozen):
    id: Identifier
    severity: Severity = "critical"


class UserCountries(_Condition):
    """Users must be in one of ``allow`` or outside every country of ``deny``."""

    kind: Literal["user_countries"] = "user_countries"
    allow: CountryList | None = None
    deny: CountryList | None = None

    @model_validator(mode="after")
    def _exactly_one_list(self) -> Self:
        if (self.allow is None) == (self.deny is None):
            raise ValueError("user_countries takes exactly one of 'allow' or 'deny'")
        return self


class DeploymentRegions(_Condition):
    """The model may only run in the listed deployment regions."""

    kind: Literal["deployment_regions"] = "deployment_regions"
    allow: ValueList


class Purposes(_Condition):
    """The model may only be used for the listed purposes."""

    kind: Literal["purposes"] = "purposes"
    allow: ValueList


class Safeguards(_Condition):
    """Every listed safeguard must be attested on every access."""

    kind: Literal["safeguards"] = "safeguards"
    require: ValueList


class UsageCap(_Condition):
    """At most ``units`` of usage per grant in each UTC-aligned hour or day."""

    kind: Literal["usage_cap"] = "usage_cap"
    units: Annotated[int, Field(strict=True, ge=1, le=MAX_UNITS)]
    """The cap; no larger than an access may report (exact in JSON numbers everywhere)."""
    window: Literal["hour", "day"]


Condition = Annotated[
    UserCountries | DeploymentRegions | Purposes | Safeguards | UsageCap,
    Field(discriminator="kind"),
]

CONDITION_KINDS: tuple[str, ...] = (
    "user_countries",
    "deployment_regions",
    "purposes",
    "safeguards",
    "usage_cap",
)


class BreachPolicy(Frozen):
    """Critical breaches of one grant counted in a sliding window trip suspension or revocation."""

    suspend_after_critical: Threshold | None = None
    revoke_after_critical: Threshold | None = None
    window_seconds: Annotated[
        int, Field(ge=limits.MIN_WINDOW_SECONDS, le=limits.MAX_WINDOW_SECONDS)
    ] = 3600


def check_unique_condition_ids(conditions: list[Condition]) -> list[Condition]:
    seen: set[str] = set()
    for condition in conditions:
        if condition.id in seen:
            raise ValueError(f"condition id {condition.id!r} appears more than once")
        seen.add(condition.id)
    return conditions
