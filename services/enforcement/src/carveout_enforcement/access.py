"""The facts of one access, read fast from the wire.

The hot path reads ``access.recorded`` with msgspec (typed, strict, in C), mirroring the
contract's pydantic model; anything unusual (an older version, a missing or odd field)
goes through the full model instead, which either accepts it or names the problem. A
property test holds the two readings to the same answers.

Both readings then hold ``occurred_at`` to its bounds (DESIGN §10): not before
2000-01-01, and not further ahead of the time the access was received than the allowed
clock skew. An access outside them is ``invalid`` (dead-lettered), never judged: a date
far in the past or future cannot be counted in a usage window or acted on by a breach
policy without overflowing somewhere downstream.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from carveout_contracts import AccessRecorded, PoisonMessage, codec, limits, topics
from carveout_contracts.common import MAX_UNITS

EARLIEST_OCCURRED_AT = limits.EARLIEST_OCCURRED_AT.timestamp()


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


_Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_ID)]
_ListString = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_LIST_STRING)]
Safeguards = Annotated[list[_ListString], msgspec.Meta(max_length=limits.MAX_SAFEGUARDS)]
"""An access's safeguards as the contract limits them (shared with the decision API's reader)."""


class _WireData(msgspec.Struct):
    request_id: _Ident
    grantee_id: _Ident
    model_id: _Ident
    user_id: _Ident
    user_country: Annotated[str, msgspec.Meta(min_length=2, max_length=2)]
    deployment_region: _Ident
    purpose: _Ident
    gateway_id: _Ident
    safeguards: Safeguards = msgspec.field(default_factory=list)
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
    except (msgspec.DecodeError, RecursionError):  # the full model names the problem
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


def occurred_at_problem(occurred_at: float, now: float, max_future_skew_s: float) -> str | None:
    """Why an access's ``occurred_at`` (epoch seconds) is out of bounds, or ``None``.

    The answer names the bound and not the field, which each edge names its own way.

    Pure: ``now`` is the caller's, so a replay can judge by the time the live service did.
    """
    if occurred_at < EARLIEST_OCCURRED_AT:
        return (
            f"{_text(occurred_at)} is before "
            f"{limits.EARLIEST_OCCURRED_AT:%Y-%m-%d}, the earliest an access may be"
        )
    if occurred_at > now + max_future_skew_s:
        return (
            f"{_text(occurred_at)} is more than {max_future_skew_s:g}s after "
            f"{_text(now)}, when it was received (CARVEOUT_ENFORCEMENT_MAX_FUTURE_SKEW_SECONDS)"
        )
    return None


def _text(moment: float) -> str:
    try:
        return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):  # 9999-12-31T23:59:59.999999Z rounds past
        return f"{moment:.0f} s after 1970-01-01"


def received_at(record: Any, wall_clock: float) -> float:
    """When the log received ``record``: its timestamp, else ``wall_clock``.

    The future-skew bound is measured from here rather than from the clock of whoever
    reads the record. Carveout's topics stamp each record with the broker's append time
    (``LogAppendTime``), so the live consumer and any later replay see the same value
    and judge the same access the same way; with the wall clock, a replay days later
    would accept what live refused (and the bound would depend on consumer lag). Only a
    record without a timestamp falls back to the reader's clock.
    """
    timestamp = getattr(record, "timestamp", None)
    if isinstance(timestamp, int) and timestamp > 0:
        return timestamp / 1000
    return wall_clock


def read_access(
    value: bytes | None,
    now: float,
    *,
    max_future_skew_s: float = limits.DEFAULT_MAX_FUTURE_SKEW_SECONDS,
) -> Access:
    """Read one ``carveout.access`` message received at ``now`` (epoch seconds); raises
    ``PoisonMessage`` with the reason, ``invalid`` for an ``occurred_at`` out of bounds."""
    access = _fast(value) if value is not None else None
    if access is None:
        access = Access.of(codec.decode(topics.ACCESS, value))
    # Two float comparisons on the hot path; the message is built only for the refused.
    if not EARLIEST_OCCURRED_AT <= access.occurred_at <= now + max_future_skew_s:
        problem = occurred_at_problem(access.occurred_at, now, max_future_skew_s)
        if problem is not None:
            raise PoisonMessage("invalid", f"occurred_at: {problem}")
    return access
