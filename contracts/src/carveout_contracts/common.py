"""Building blocks shared by every event model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

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


WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""Unicode's White_Space: what the schemas' ``\\S`` pattern counts as white space (Python's
own ``str.strip()`` also drops the separators U+001C to U+001F, which the pattern keeps:
stripping those could leave nothing of a value the pattern let through)."""


def _stripped(value: str) -> str:
    """Surrounding white space is not part of a value: it is dropped once the raw text has
    passed its bounds, so the limits hold for what was sent, as the schemas say."""
    return value.strip(WHITE_SPACE)


def _text(most: int) -> Any:
    """Text of at most ``most`` characters as sent, with something besides white space."""
    return StringConstraints(min_length=1, max_length=most, pattern=r"\S")


Identifier = Annotated[str, _text(limits.MAX_ID), AfterValidator(_stripped)]
ListString = Annotated[str, _text(limits.MAX_LIST_STRING), AfterValidator(_stripped)]
"""One value inside a condition's ``allow``/``deny``/``require`` list or an access's safeguards."""
CountryCode = Annotated[
    str,
    StringConstraints(pattern=r"^\s*[A-Za-z]{2}\s*$"),
    AfterValidator(lambda code: code.strip().upper()),
]
Severity = Literal["warning", "critical"]
Cause = Literal["regulator", "breach_policy"]
Reason = Annotated[str, _text(limits.MAX_REASON), AfterValidator(_stripped)]
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
