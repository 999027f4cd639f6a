"""The limits of DESIGN §10: how large any input to Carveout may be.

The field and list limits are part of the wire contract: every producer and consumer
holds events to them, and raising one is a contract change (a new event ``version``).
The byte limits and the time bounds are defaults of the edges that accept input; each
service reads them from its settings (``CARVEOUT_*``), so an operator can move them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB

# --------------------------------------------------------------------------- wire contract

MAX_ID: Final = 200
"""Characters in an id: grant, grantee, carveout, model, user, request, gateway, condition,
subscription."""
MAX_CONDITIONS: Final = 64
"""Conditions in one grant."""
MAX_LIST_VALUES: Final = 256
"""Values in one ``allow``, ``deny`` or ``require`` list of a condition."""
MAX_CONTACTS: Final = 16
"""Contacts of one grantee."""
MAX_SAFEGUARDS: Final = 64
"""Safeguards attested on one access."""
MAX_EVENT_TYPES: Final = 32
"""Event types one subscription names."""
MAX_LIST_STRING: Final = 200
"""Characters in one string inside such a list."""
MAX_REASON: Final = 2000
"""Characters in a reason."""
MAX_ADDRESS: Final = 2000
"""Characters in a contact's or subscription's address."""
MIN_WINDOW_SECONDS: Final = 1
MAX_WINDOW_SECONDS: Final = 31 * 24 * 3600
"""A breach policy's sliding window: 1 s to 31 days."""
MAX_POLICY_THRESHOLD: Final = 10_000
"""A breach policy's ``suspend_after_critical`` / ``revoke_after_critical``: 1 to 10,000."""
MAX_VIOLATIONS: Final = MAX_CONDITIONS + 1
"""Violations in one breach: one per condition, plus ``no_active_grant`` or ``stale``."""

EARLIEST_OCCURRED_AT: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""No access happened before this: an earlier ``occurred_at`` is refused."""

# --------------------------------------------------------------------------- edge defaults

MAX_PAGE_OFFSET: Final = 1_000_000_000
"""The furthest a listing may be paged (``offset``): past any store's rows, inside every
store's integers."""

DEFAULT_MAX_FUTURE_SKEW_SECONDS: Final = 300
"""How far in the future an access's ``occurred_at`` may be (gateway clocks drift)."""
DEFAULT_HTTP_BODY_BYTES: Final = 256 * KIB
"""An HTTP request body, unless the route says otherwise."""
DEFAULT_ACCESS_BODY_BYTES: Final = 4 * MIB
"""``POST /v1/access``, which takes a batch of accesses."""
DEFAULT_DECISION_BODY_BYTES: Final = 64 * KIB
"""``POST /v1/decisions``."""
DEFAULT_RECORD_BYTES: Final = 512 * KIB
"""A consumed record's value; also the most any service publishes as one event, so that
everything published is accepted by every consumer."""
DEAD_LETTER_WHOLE_BYTES: Final = 256 * KIB
"""A dead letter keeps a value up to this size whole ..."""
DEAD_LETTER_HEAD_BYTES: Final = 4 * KIB
"""... and of a larger one its first bytes, its size and its SHA-256."""

MAX_PARTITIONS: Final = 10_000
"""Partitions a heartbeat may report positions for."""
MAX_NOTE_BYTES: Final = 16 * KIB
"""A signed checkpoint note's text (C2SP signed-note)."""
