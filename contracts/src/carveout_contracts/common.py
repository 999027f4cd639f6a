"""Building blocks shared by every event model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from . import limits


class Frozen(BaseModel):
    """Immutable model that ignores unknown fields, so producers may add fields freely."""

    model_config = ConfigDict(frozen=True, extra="ignore")


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range once converted to UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
"""A timezone-aware instant, normalised to UTC (serialised with a trailing ``Z``)."""

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=limits.MAX_ID, strip_whitespace=True)
]
ListString = Annotated[
    str, StringConstraints(min_length=1, max_length=limits.MAX_LIST_STRING, strip_whitespace=True)
]
"""One value inside a condition's ``allow``/``deny``/``require`` list or an access's safeguards."""
CountryCode = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z]{2}$", to_upper=True, strip_whitespace=True)
]
Severity = Literal["warning", "critical"]
Cause = Literal["regulator", "breach_policy"]
Reason = Annotated[
    str, StringConstraints(min_length=1, max_length=limits.MAX_REASON, strip_whitespace=True)
]
NonEmptyList = Field(min_length=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """Instants as fixed-width UTC text, which sorts like time in every store."""
    utc = moment.astimezone(UTC)
    # %Y is not zero-padded below year 1000 on every platform: pad it, or such a year
    # neither sorts nor reads back (``0001-01-01`` is a date the contract admits).
    return f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.%fZ")


MAX_UNITS = 2**53 - 1
"""Largest usage count an access may report: exact in JSON numbers everywhere."""
