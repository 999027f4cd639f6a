"""A breach policy's action always fits in a record (DESIGN §10): it names at most as many
breaches as its threshold, however many out-of-order breaches fill the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from carveout_contracts import limits
from carveout_grant.breach_policy import policy_action
from carveout_grant.domain import Grant, GrantRequest, PolicyTrip, apply, issue, revoke

T0 = datetime(2026, 6, 28, 14, 0, tzinfo=UTC)
LONGEST_ID = "g" * limits.MAX_ID


def grant_with_policy(**policy: int) -> Grant:
    request = GrantRequest.model_validate(
        {
            "carveout_id": "c" * limits.MAX_ID,
            "model_id": "m" * limits.MAX_ID,
            "grantee": {"id": "o" * limits.MAX_ID, "name": "n" * limits.MAX_ID},
            "valid_from": "2026-06-28T00:00:00Z",
            "valid_until": "2026-12-31T00:00:00Z",
            "breach_policy": {"window_seconds": limits.MAX_WINDOW_SECONDS, **policy},
        }
    )
    return apply(None, issue(request, grant_id=LONGEST_ID, by="regulator", now=T0))


def breaches(count: int, width: int = 36) -> list[tuple[str, datetime]]:
    """``count`` breaches in the window, with ids ``width`` characters long (a forged
    breach may carry an id as long as the contract allows)."""
    at = T0 + timedelta(hours=1)
    return [(f"brc_{n:0{width - 4}x}", at) for n in range(count)]


def test_the_ids_named_are_at_most_the_threshold_that_tripped() -> None:
    grant = grant_with_policy(suspend_after_critical=3)
    ordered = policy_action(grant, breaches(50), T0 + timedelta(hours=2))
    assert ordered is not None
    action, ids = ordered
    assert action == "suspend"
    assert ids == sorted(bid for bid, _ in breaches(50))[:3]


def test_the_largest_policy_revocation_fits_in_a_record() -> None:
    threshold = limits.MAX_POLICY_THRESHOLD
    grant = grant_with_policy(revoke_after_critical=threshold)
    ordered = policy_action(
        grant, breaches(3 * threshold, width=limits.MAX_ID), T0 + timedelta(hours=2)
    )
    assert ordered is not None
    action, ids = ordered
    assert action == "revoke"
    assert 0 < len(ids) < threshold  # cut by size: 10,000 ids of 200 characters is 2 MB
    event = revoke(
        [grant],
        f"breach policy: {len(ids)} critical breaches within {limits.MAX_WINDOW_SECONDS}s",
        carveout_id=grant.carveout_id,
        by="breach-policy",
        now=T0,
        tripped=PolicyTrip(ids, uuid4()),
    )
    assert len(event.model_dump_json().encode()) <= limits.DEFAULT_RECORD_BYTES
