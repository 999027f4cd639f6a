"""The facts of one access, read fast from the wire.

The hot path reads ``access.recorded`` with orjson and explicit checks that mirror the
contract's pydantic model; anything unusual (an older version, a missing or odd field)
goes through the full model instead, which either accepts it or names the problem. A
property test holds the two readings to the same answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from carveout_contracts import AccessRecorded, codec, topics

_COUNTRY = re.compile(r"[A-Za-z]{2}")
_MAX_ID = 200


@dataclass(frozen=True, slots=True)
class Access:
    event_id: str
    occurred_at: float
    """Seconds since the epoch (UTC)."""
    request_id: str
    grantee_id: str
    model_id: str
    grant_id: str | None
    user_id: str
    user_country: str
    deployment_region: str
    purpose: str
    safeguards: frozenset[str]
    units: int
    gateway_id: str

    @property
    def occurred(self) -> datetime:
        return datetime.fromtimestamp(self.occurred_at, UTC)

    @classmethod
    def of(cls, event: AccessRecorded) -> Access:
        d = event.data
        return cls(
            event_id=str(event.event_id),
            occurred_at=event.occurred_at.timestamp(),
            request_id=d.request_id,
            grantee_id=d.grantee_id,
            model_id=d.model_id,
            grant_id=d.grant_id,
            user_id=d.user_id,
            user_country=d.user_country,
            deployment_region=d.deployment_region,
            purpose=d.purpose,
            safeguards=frozenset(d.safeguards),
            units=d.units,
            gateway_id=d.gateway_id,
        )


def _ident(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if type(value) is not str:
        return None
    value = value.strip()
    return value if 0 < len(value) <= _MAX_ID else None


def _fast(value: bytes) -> Access | None:
    """The common case, or ``None`` to let the full model decide."""
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(raw) is not dict or raw.get("type") != "access.recorded":
        return None
    if raw.get("version") != 1 or type(raw.get("version")) is not int:
        return None
    data = raw.get("data")
    producer = raw.get("producer")
    if type(data) is not dict or type(producer) is not str or not producer.strip():
        return None
    if "key" in raw and type(raw["key"]) is not str:
        return None
    try:
        event_id = str(UUID(raw["event_id"]))
        occurred = datetime.fromisoformat(raw["occurred_at"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if occurred.tzinfo is None:
        return None
    fields = [
        _ident(data, n)
        for n in (
            "request_id",
            "grantee_id",
            "model_id",
            "user_id",
            "deployment_region",
            "purpose",
            "gateway_id",
        )
    ]
    if None in fields:
        return None
    grant_id = data.get("grant_id")
    if grant_id is not None:
        grant_id = _ident(data, "grant_id")
        if grant_id is None:
            return None
    country = data.get("user_country")
    if type(country) is not str or not _COUNTRY.fullmatch(country.strip()):
        return None
    safeguards = data.get("safeguards", [])
    if type(safeguards) is not list:
        return None
    cleaned = []
    for item in safeguards:
        if type(item) is not str or not 0 < len(item.strip()) <= _MAX_ID:
            return None
        cleaned.append(item.strip())
    units = data.get("units", 0)
    if type(units) is not int or units < 0:
        return None
    request_id, grantee_id, model_id, user_id, region, purpose, gateway_id = fields
    return Access(
        event_id=event_id,
        occurred_at=occurred.timestamp(),
        request_id=request_id,  # type: ignore[arg-type]
        grantee_id=grantee_id,  # type: ignore[arg-type]
        model_id=model_id,  # type: ignore[arg-type]
        grant_id=grant_id,
        user_id=user_id,  # type: ignore[arg-type]
        user_country=country.strip().upper(),
        deployment_region=region,  # type: ignore[arg-type]
        purpose=purpose,  # type: ignore[arg-type]
        safeguards=frozenset(cleaned),
        units=units,
        gateway_id=gateway_id,  # type: ignore[arg-type]
    )


def read_access(value: bytes | None) -> Access:
    """Read one ``carveout.access`` message; raises ``PoisonMessage`` with the reason."""
    if value is not None:
        fast = _fast(value)
        if fast is not None:
            return fast
    return Access.of(codec.decode(topics.ACCESS, value))
