"""``carveout.access``: the accesses gateways serve. Produced by gateways; keyed by
grantee id."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from .. import limits, topics
from ..common import (
    MAX_UNITS,
    CountryCode,
    Frozen,
    Identifier,
    ListString,
)
from .envelope import Envelope

__all__ = ["AccessEvent", "AccessRecorded", "AccessRecordedData"]


class AccessRecordedData(Frozen):
    request_id: Identifier
    grantee_id: Identifier
    model_id: Identifier
    grant_id: Identifier | None = None
    user_id: Identifier
    user_country: CountryCode
    deployment_region: Identifier
    purpose: Identifier
    safeguards: list[ListString] = Field(default_factory=list, max_length=limits.MAX_SAFEGUARDS)
    units: Annotated[int, Field(strict=True, ge=0, le=MAX_UNITS)] = 0
    gateway_id: Identifier


class AccessRecorded(Envelope, topic=topics.ACCESS, key=lambda data: data.grantee_id):
    """A model gateway served (or was asked for) one access to a restricted model.

    Produced by gateways; ``occurred_at`` is when the access happened.
    """

    type: Literal["access.recorded"] = "access.recorded"
    version: Literal[1] = 1
    data: AccessRecordedData


AccessEvent = Annotated[AccessRecorded, Field(discriminator="type")]
"""The events of ``carveout.access``."""
