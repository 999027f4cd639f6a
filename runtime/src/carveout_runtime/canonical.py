"""RFC 8785 (JSON Canonicalization Scheme) bytes, for anything that is hashed or signed
as JSON: the same value always gives the same bytes, whoever serializes it.

Decision leaves of the transparency log are such values: an auditor rebuilds them from
the topics and must get byte-identical leaves. The ``rfc8785`` package implements the
scheme (UTF-16 key order, ECMAScript number formatting, minimal escapes); this module
only fixes the one entry point the project uses.
"""

from __future__ import annotations

from typing import Any

import rfc8785

CanonicalizationError = rfc8785.CanonicalizationError


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 JSON of ``value``.

    ``value`` is built of dicts with string keys, lists or tuples, strings, booleans,
    None, integers within ±(2**53 - 1) and finite floats; anything else (a bigger
    integer, NaN, a datetime, a lone surrogate) raises ``ValueError``
    (``CanonicalizationError`` for the scheme's own limits) rather than being coerced,
    so a leaf never silently means something else.
    """
    return rfc8785.dumps(value)
