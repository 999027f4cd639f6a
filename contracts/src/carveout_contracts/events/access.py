"""``carveout.access``: the accesses gateways serve. Produced by gateways; keyed by
grantee id."""

from __future__ import annotations

import json
import uuid
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

GATEWAY_REQUESTS = uuid.UUID("0c1b3f52-8f4e-5a55-9d0c-6a7e2b1f4c10")
"""The UUID namespace of :func:`access_event_id`."""


def access_event_id(gateway_id: str, request_id: str) -> uuid.UUID:
    """The ``event_id`` of the access a gateway served for one of its requests: a retried
    request gets the same id, so it is recorded once (consumers are idempotent by event id).
    The two ids are joined as a JSON array, so no pair of ids spells another pair's name."""
    return uuid.uuid5(GATEWAY_REQUESTS, json.dumps([gateway_id, request_id]))
