"""``carveout.grants``: what regulators (and breach policies) do to grants. Produced by the
grant service; keyed by grant id."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    EmailStr,
    Field,
    HttpUrl,
    PositiveInt,
    TypeAdapter,
    field_validator,
    model_validator,
)

from .. import limits, topics
from ..common import (
    Cause,
    Frozen,
    Identifier,
    Reason,
    UtcDatetime,
)
from ..conditions import BreachPolicy, Condition, check_unique_condition_ids
from .envelope import Envelope

__all__ = [
    "CarveoutRevoked",
    "CarveoutRevokedData",
    "Contact",
    "GrantAmended",
    "GrantAmendedData",
    "GrantEvent",
    "GrantIssued",
    "GrantIssuedData",
    "GrantReinstated",
    "GrantStatusChangeData",
    "GrantSuspended",
    "Grantee",
    "TermsChecks",
    "affected_grants",
]


class Contact(Frozen):
    """Where a party wants to hear about a grant: a webhook URL or an email address."""

    kind: Literal["webhook", "email"]
    address: str = Field(min_length=3, max_length=limits.MAX_ADDRESS)

    @model_validator(mode="after")
    def _address_fits_kind(self) -> Self:
        if self.kind == "webhook":
            url = HttpUrl(self.address)
            if url.scheme not in ("http", "https"):
                raise ValueError("a webhook address must be an http or https URL")
        else:
            TypeAdapter(EmailStr).validate_python(self.address)
        return self


class Grantee(Frozen):
    """The vetted organisation a grant is made to."""

    id: Identifier
    name: Identifier
    contacts: list[Contact] = Field(default_factory=list, max_length=limits.MAX_CONTACTS)


class TermsChecks(Frozen):
    """Checks every model carrying grant terms (validity, conditions, policy) must pass."""

    @field_validator("conditions", check_fields=False)
    @classmethod
    def _unique_condition_ids(cls, value: list[Condition]) -> list[Condition]:
        return check_unique_condition_ids(value)

    @model_validator(mode="after")
    def _window_is_ordered(self) -> Self:
        if self.valid_until <= self.valid_from:  # type: ignore[attr-defined]
            raise ValueError("valid_until must be later than valid_from")
        return self


class GrantIssuedData(TermsChecks):
    grant_id: Identifier
    carveout_id: Identifier
    version: Literal[1] = 1
    grantee: Grantee
    model_id: Identifier
    valid_from: UtcDatetime
    valid_until: UtcDatetime
    conditions: list[Condition] = Field(default_factory=list, max_length=limits.MAX_CONDITIONS)
    breach_policy: BreachPolicy = Field(default_factory=BreachPolicy)
    issued_by: Identifier


class GrantAmendedData(TermsChecks):
    grant_id: Identifier
    version: PositiveInt
    valid_from: UtcDatetime
    valid_until: UtcDatetime
    conditions: list[Condition] = Field(default_factory=list, max_length=limits.MAX_CONDITIONS)
    breach_policy: BreachPolicy = Field(default_factory=BreachPolicy)
    amended_by: Identifier
    reason: Reason
    effective_at: UtcDatetime


class GrantStatusChangeData(Frozen):
    grant_id: Identifier
    version: PositiveInt
    reason: Reason
    by: Identifier
    effective_at: UtcDatetime
    cause: Cause = "regulator"
    breach_ids: list[str] = Field(default_factory=list)


class CarveoutRevokedData(Frozen):
    carveout_id: Identifier
    grant_ids: list[Identifier] = Field(min_length=1)
    reason: Reason
    revoked_by: Identifier
    effective_at: UtcDatetime
    cause: Cause = "regulator"
    breach_ids: list[str] = Field(default_factory=list)
    grant_versions: dict[str, PositiveInt] = Field(
        default_factory=dict, description="Each revoked grant's version after the revocation."
    )


class GrantIssued(Envelope, topic=topics.GRANTS, key=lambda data: data.grant_id):
    """A regulator issued a new grant under a carveout. Produced by the grant service."""

    type: Literal["grant.issued"] = "grant.issued"
    version: Literal[1] = 1
    data: GrantIssuedData


class GrantAmended(Envelope, topic=topics.GRANTS, key=lambda data: data.grant_id):
    """A regulator replaced a grant's conditions, validity or breach policy.

    Produced by the grant service; ``data`` holds the complete new terms.
    """

    type: Literal["grant.amended"] = "grant.amended"
    version: Literal[1] = 1
    data: GrantAmendedData


class GrantSuspended(Envelope, topic=topics.GRANTS, key=lambda data: data.grant_id):
    """A grant stopped covering accesses until reinstated, by a regulator or its breach policy.

    Produced by the grant service.
    """

    type: Literal["grant.suspended"] = "grant.suspended"
    version: Literal[1] = 1
    data: GrantStatusChangeData


class GrantReinstated(Envelope, topic=topics.GRANTS, key=lambda data: data.grant_id):
    """A suspended grant covers accesses again. Produced by the grant service."""

    type: Literal["grant.reinstated"] = "grant.reinstated"
    version: Literal[1] = 1
    data: GrantStatusChangeData


class CarveoutRevoked(Envelope, topic=topics.GRANTS, key=lambda data: data.grant_ids[0]):
    """A carveout was revoked, ending every listed grant for good.

    Produced by the grant service, on a regulator's order or by a grant's breach policy.
    Keyed by the first revoked grant's id.
    """

    type: Literal["carveout.revoked"] = "carveout.revoked"
    version: Literal[1] = 1
    data: CarveoutRevokedData


GrantEvent = Annotated[
    GrantIssued | GrantAmended | GrantSuspended | GrantReinstated | CarveoutRevoked,
    Field(discriminator="type"),
]
"""The events of ``carveout.grants``."""


def affected_grants(event: Any) -> list[str]:
    """The grants a grant event changes: every grant a ``carveout.revoked`` names, else one."""
    if isinstance(event, CarveoutRevoked):
        return list(event.data.grant_ids)
    return [event.data.grant_id]
