"""Consistency tokens: which grant versions a regulator action produced.

A token answers the "new enemy" question: a reader that has applied every grant version
named in the token has seen the action. Versions, unlike log offsets, survive a log that
is rebuilt or re-partitioned.
"""

from __future__ import annotations

import base64
import json

PREFIX = "ct1."


class BadConsistencyToken(ValueError):
    pass


def encode_token(versions: dict[str, int]) -> str:
    body = json.dumps(dict(sorted(versions.items())), separators=(",", ":")).encode()
    return PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode_token(token: str) -> dict[str, int]:
    if not token.startswith(PREFIX):
        raise BadConsistencyToken(f"not a consistency token (expected it to start with {PREFIX!r})")
    body = token[len(PREFIX) :]
    try:
        raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise BadConsistencyToken("consistency token is corrupt") from None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in raw.items()
    ):
        raise BadConsistencyToken("consistency token is corrupt")
    return raw
