"""Text values (ids, list strings, reasons) are bounded as sent, then stripped of white
space: whatever one accepts, it accepts again unchanged, so an API body re-read as a
contract model never fails (it did for a reason of U+001F, which Python strips and the
schemas' pattern keeps)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from carveout_contracts.common import Identifier, ListString, Reason

TYPES = [TypeAdapter(Identifier), TypeAdapter(ListString), TypeAdapter(Reason)]


@given(st.text(max_size=40), st.sampled_from(TYPES))
def test_an_accepted_value_is_accepted_again_unchanged(text: str, kind: TypeAdapter[str]) -> None:
    try:
        value = kind.validate_python(text)
    except ValidationError:
        return
    assert value
    assert kind.validate_python(value) == value


def test_separators_python_counts_as_space_are_kept() -> None:
    for kind in TYPES:
        assert kind.validate_python("\x1c") == "\x1c"
        assert kind.validate_python(" \x1fa\u3000") == "\x1fa"
