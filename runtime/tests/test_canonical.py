"""RFC 8785 canonical JSON: the RFC's own examples and the limits it sets."""

from __future__ import annotations

import json
import math

import pytest

from carveout_runtime.canonical import CanonicalizationError, canonical_json


def test_rfc8785_section_3_2_2_example() -> None:
    # The input of RFC 8785 §3.2.2 as JSON text, and the output the RFC gives for it
    # (number formatting, escapes, literals, key order).
    rfc_input = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50,
                  2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    rfc_output = (
        r"""{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"""
        r""""string":"€$\u000f\nA'B\"\\\\\"/"}"""
    )
    assert canonical_json(json.loads(rfc_input)) == rfc_output.encode()


def test_rfc8785_section_3_2_3_sorts_keys_by_utf16_code_units() -> None:
    # RFC 8785 §3.2.3 sorting example: keys ordered by UTF-16 code units, so the
    # emoji (a surrogate pair, 0xD83D...) sorts before U+FB33.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = canonical_json(value).decode().split('"')[1::4]
    assert keys == ["\\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_a_decision_leaf_is_compact_and_independent_of_key_order() -> None:
    leaf = {
        "access_event_id": "e1",
        "decision": "deny",
        "violations": [{"kind": "purposes", "condition_id": "c1"}],
        "grant_version": 2,
        "grant_id": None,
    }
    assert canonical_json(leaf) == canonical_json(dict(reversed(leaf.items())))
    assert canonical_json(leaf) == (
        b'{"access_event_id":"e1","decision":"deny","grant_id":null,"grant_version":2,'
        b'"violations":[{"condition_id":"c1","kind":"purposes"}]}'
    )


@pytest.mark.parametrize("bad", [2**53, math.nan, math.inf, {1: "x"}, object()])
def test_values_outside_the_scheme_are_refused(bad: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_json({"x": bad})
