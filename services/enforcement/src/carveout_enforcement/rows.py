"""The rows judging leaves, typed: each field is a column of its table, by name.

The store builds its bulk inserts from these fields (and checks at start-up that they are
the table's columns), so a row can never be written into the wrong columns. msgspec
structs, as ``Access`` is: built in C, as the hot path needs.
"""

from __future__ import annotations

import msgspec


class DecisionRow(msgspec.Struct, frozen=True, gc=False):
    """One judged access: a row of ``decisions`` (its key is the access's processed mark)."""

    access_event_id: str
    request_id: str
    grantee_id: str
    model_id: str
    grant_id: str | None
    grant_version: int | None
    decision: str
    violations: str
    """The violations as a JSON list."""
    occurred_at: int
    """Epoch microseconds (UTC), as every time in the store."""
    judged_at: int
    user_id: str
    gateway_id: str
    units: int
    log_partition: int | None = None
    """The access partition whose decision log holds this decision (DESIGN §12); ``None``
    when it was judged with the log off."""
    leaf_index: int | None = None
    """Its leaf's index in that log."""
    leaf_hash: bytes | None = None
    """The RFC 6962 hash of its leaf (32 bytes): what the log's tree is rebuilt from."""


class BreachRow(msgspec.Struct, frozen=True, gc=False):
    """A breach and its ``condition.breached`` event: a row of ``breaches`` (the outbox)."""

    breach_id: str
    access_event_id: str
    grant_id: str | None
    grantee_id: str
    severity: str
    occurred_at: int
    payload: str
    """The event as published, JSON."""
    published_at: str | None = None
    traceparent: str | None = None
    """The access record's W3C ``traceparent``: the breach event continues its trace."""


class UsageRow(msgspec.Struct, frozen=True, gc=False):
    """Units used by a grant in one UTC-aligned window: a row of ``usage``."""

    grant_id: str
    window: str
    window_start: int
    units: int
