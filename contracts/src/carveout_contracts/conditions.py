"""The conditions a grant attaches to a carveout, and the breach policy."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, PositiveInt, model_validator

from .common import CountryCode, Frozen, Identifier, Severity


class _Condition(Frozen):
    id: Identifier
    severity: Severity = "critical"


class UserCountries(_Condition):
    """Users must be in one of ``allow`` or outside every country of ``deny``."""

    kind: Literal["user_countries"] = "user_countries"
    allow: Annotated[list[CountryCode], Field(min_length=1)] | None = None
    deny: Annotated[list[CountryCode], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _exactly_one_list(self) -> Self:
        if (self.allow is None) == (self.deny is None):
            raise ValueError("user_countries takes exactly one of 'allow' or 'deny'")
        return self


class DeploymentRegions(_Condition):
    """The model may only run in the listed deployment regions."""

    kind: Literal["deployment_regions"] = "deployment_regions"
    allow: list[Identifier] = Field(min_length=1)


class Purposes(_Condition):
    """The model may only be used for the listed purposes."""

    kind: Literal["purposes"] = "purposes"
    allow: list[Identifier] = Field(min_length=1)


class Safeguards(_Condition):
    """Every listed safeguard must be attested on every access."""

    kind: Literal["safeguards"] = "safeguards"
    require: list[Identifier] = Field(min_length=1)


class UsageCap(_Condition):
    """At most ``units`` of usage per grant in each UTC-aligned hour or day."""

    kind: Literal["usage_cap"] = "usage_cap"
    units: PositiveInt
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

    suspend_after_critical: PositiveInt | None = None
    revoke_after_critical: PositiveInt | None = None
    window_seconds: PositiveInt = 3600


def check_unique_condition_ids(conditions: list[Condition]) -> list[Condition]:
    seen: set[str] = set()
    for condition in conditions:
        if condition.id in seen:
            raise ValueError(f"condition id {condition.id!r} appears more than once")
        seen.add(condition.id)
    return conditions
