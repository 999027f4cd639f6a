"""The facts of one access, read fast from the wire.

The hot path reads ``access.recorded`` with msgspec (typed, strict, in C), mirroring the
contract's pydantic model; anything unusual (an older version, a missing or odd field)
goes through the full model instead, which either accepts it or names the problem. A
property test holds the two readings to the same answers.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from carveout_contracts import AccessRecorded, codec, topics
from carveout_contracts.common import MAX_UNITS

_MAX_ID = 200


class Access(msgspec.Struct, frozen=True, gc=False):
    """One access as judged (a msgspec struct: built in C, as the hot path needs)."""

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
    def occurred_us(self) -> int:
        """``occurred_at`` in whole microseconds, as the store keeps times."""
        return round(self.occurred_at * 1_000_000)

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


_Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_ID)]


class _WireData(msgspec.Struct):
    request_id: _Ident
    grantee_id: _Ident
    model_id: _Ident
    user_id: _Ident
    user_country: Annotated[str, msgspec.Meta(min_length=2, max_length=2)]
    deployment_region: _Ident
    purpose: _Ident
    gateway_id: _Ident
    safeguards: list[_Ident] = msgspec.field(default_factory=list)
    units: Annotated[int, msgspec.Meta(ge=0, le=MAX_UNITS)] = 0
    grant_id: _Ident | None = None


class _WireEnvelope(msgspec.Struct):
    event_id: str
    type: Literal["access.recorded"]
    version: Literal[1]
    occurred_at: str
    producer: _Ident
    data: _WireData
    key: str = ""


_decoder = msgspec.json.Decoder(_WireEnvelope)
_PLAIN_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")


def plain_time(text: str) -> datetime | None:
    """A plain RFC 3339 time with at most microseconds, inside the range every store holds;
    ``None`` for anything else, which is the full model's to accept or name."""
    if not _PLAIN_TIME.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None  # the right shape, an impossible date or time
    return moment if 1 < moment.year < 9999 else None


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _fast(value: bytes) -> Access | None:
    """The common case, or ``None`` to let the full model decide (and name any problem)."""
    try:
        wire = _decoder.decode(value)
    except msgspec.DecodeError:
        return None
    event_id = wire.event_id
    if not _CANONICAL_UUID.fullmatch(event_id):
        return None  # other spellings of a UUID are normalised by the full model
    occurred = plain_time(wire.occurred_at)
    if occurred is None:
        return None
    d = wire.data
    texts = (
        d.request_id,
        d.grantee_id,
        d.model_id,
        d.user_id,
        d.deployment_region,
        d.purpose,
        d.gateway_id,
        wire.producer,
        *d.safeguards,
    )
    # The contract strips surrounding white space; such values take the full model's path.
    for text in texts:
        if text != text.strip():
            return None
    if d.grant_id is not None and d.grant_id != d.grant_id.strip():
        return None
    country = d.user_country
    if not (country.isascii() and country.isalpha()):
        return None
    return Access(
        event_id=event_id,
        occurred_at=occurred.timestamp(),
        request_id=d.request_id,
        grantee_id=d.grantee_id,
        model_id=d.model_id,
        grant_id=d.grant_id,
        user_id=d.user_id,
        user_country=country.upper(),
        deployment_region=d.deployment_region,
        purpose=d.purpose,
        safeguards=frozenset(d.safeguards),
        units=d.units,
        gateway_id=d.gateway_id,
    )


def read_access(value: bytes | None) -> Access:
    """Read one ``carveout.access`` message; raises ``PoisonMessage`` with the reason."""
    if value is not None:
        fast = _fast(value)
        if fast is not None:
            return fast
    return Access.of(codec.decode(topics.ACCESS, value))
