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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from carveout_contracts import AccessRecorded, PoisonMessage, codec, limits, topics
from carveout_contracts.common import MAX_UNITS
from carveout_runtime.consumers import too_large
from carveout_runtime.retries import describe_error

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
        """An access the contract's model read (the unusual spellings the fast reader leaves)."""
        d = event.data
        return cls.of_facts(
            str(event.event_id), event.occurred_at.timestamp(), d.request_id, facts_of(d)
        )

    @classmethod
    def of_facts(
        cls, event_id: str, occurred_at: float, request_id: str, facts: AccessFacts
    ) -> Access:
        """The access an event (or a decision request) describes, from its facts."""
        return cls(
            event_id=event_id,
            occurred_at=occurred_at,
            request_id=request_id,
            grantee_id=facts.grantee_id,
            model_id=facts.model_id,
            grant_id=facts.grant_id,
            user_id=facts.user_id,
            user_country=facts.user_country.upper(),
            deployment_region=facts.deployment_region,
            purpose=facts.purpose,
            safeguards=frozenset(facts.safeguards),
            units=facts.units,
            gateway_id=facts.gateway_id,
        )


Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_ID)]
"""An id as the contract limits it (grantee, model, user, request, gateway...)."""
_ListString = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_LIST_STRING)]
Safeguards = Annotated[list[_ListString], msgspec.Meta(max_length=limits.MAX_SAFEGUARDS)]


class AccessFacts(msgspec.Struct):
    """What a judgement reads of an access, as the contract limits it: the
    ``access.recorded`` data that an access event and a decision request both carry."""

    grantee_id: Ident
    model_id: Ident
    user_id: Ident
    user_country: Annotated[str, msgspec.Meta(min_length=2, max_length=2)]
    deployment_region: Ident
    purpose: Ident
    gateway_id: Ident
    safeguards: Safeguards = msgspec.field(default_factory=list)
    units: Annotated[int, msgspec.Meta(ge=0, le=MAX_UNITS)] = 0
    grant_id: Ident | None = None

    def as_data(self) -> dict[str, Any]:
        """The facts by name: the ``access.recorded`` data but for its request id. Only
        these: a subclass read off the wire (a decision request) carries more fields."""
        return {name: getattr(self, name) for name in AccessFacts.__struct_fields__}


def facts_of(model: Any) -> AccessFacts:
    """The facts a pydantic model already validated holds (the contract's ``data``, or a
    decision request), for the few read by the full model rather than the fast reader."""
    return AccessFacts(**{name: getattr(model, name) for name in AccessFacts.__struct_fields__})


def plainly_written(facts: AccessFacts, *texts: str) -> bool:
    """Whether the facts (and ``texts``) are as the contract would leave them: nothing with
    surrounding white space (the contract strips it), a country of two ASCII letters.
    Anything else takes the full model's path, which accepts it normalised or names the
    problem."""
    for text in (
        facts.grantee_id,
        facts.model_id,
        facts.user_id,
        facts.deployment_region,
        facts.purpose,
        facts.gateway_id,
        *facts.safeguards,
        *texts,
    ):
        if text != text.strip():
            return False
    grant_id, country = facts.grant_id, facts.user_country
    if grant_id is not None and grant_id != grant_id.strip():
        return False
    return country.isascii() and country.isalpha()


class _WireData(AccessFacts, kw_only=True):
    request_id: Ident


class _WireEnvelope(msgspec.Struct):
    event_id: str
    type: Literal["access.recorded"]
    version: Literal[1]
    occurred_at: str
    producer: Ident
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
    if not plainly_written(d, d.request_id, wire.producer):
        return None
    return Access.of_facts(event_id, occurred.timestamp(), d.request_id, d)


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


Arrival = tuple[Access, int | None]
"""An access with the time the log received it (its record timestamp, epoch ms)."""


@dataclass(slots=True)
class Batch:
    """A batch of ``carveout.access`` records as read: each access once, and the rest."""

    accesses: dict[str, Arrival] = field(default_factory=dict)
    """By event id, in the order of their first record."""
    records: dict[str, Any] = field(default_factory=dict)
    """The first record of each access: its position (to set it aside) and its trace."""
    set_aside: list[tuple[Any, str, str]] = field(default_factory=list)
    """Records that can never be judged, with the reason and the error."""
    repeats: int = 0
    """Readable records of an access already in the batch."""


def read_batch(
    records: Sequence[Any], wall_clock: float, *, max_future_skew_s: float, record_max_bytes: int
) -> Batch:
    """Read a batch of records: what is too large or unreadable is set aside, a repeat within
    the batch is dropped (the first record counts). ``wall_clock`` stands in for the append
    time of a record without one (see :func:`received_at`)."""
    batch = Batch()
    for record in records:
        oversize = too_large(record.value, record_max_bytes)
        if oversize is not None:
            batch.set_aside.append((record, "too_large", oversize))
            continue
        try:
            access = read_access(
                record.value,
                received_at(record, wall_clock),
                max_future_skew_s=max_future_skew_s,
            )
        except PoisonMessage as poison:
            batch.set_aside.append((record, poison.reason, poison.error))
            continue
        except Exception as exc:  # reading it can never succeed later: set it aside
            batch.set_aside.append((record, "invalid", describe_error(exc)))
            continue
        if access.event_id in batch.accesses:
            batch.repeats += 1
        else:
            batch.accesses[access.event_id] = (access, getattr(record, "timestamp", None))
            batch.records[access.event_id] = record
    return batch
