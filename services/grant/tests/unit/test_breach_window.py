"""A breach dated at the edge of time (``0001-01-01``) is counted, not a poison loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from carveout_contracts import limits
from carveout_contracts.common import iso_utc
from carveout_grant.breach_policy import window_start
from carveout_grant.handlers.breaches import BreachPolicy
from carveout_grant.store import GrantStore
from carveout_runtime.inbound import Inbound

from .test_counted_breach import NOW, Relay, breach, issued_grant
from .test_counted_breach import store as store  # the fixture

YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)


def test_year_one_is_written_fixed_width_so_it_sorts_and_reads_back() -> None:
    assert iso_utc(YEAR_ONE) == "0001-01-01T00:00:00.000000Z"
    assert datetime.fromisoformat(iso_utc(YEAR_ONE)) == YEAR_ONE


def test_the_window_is_clamped_at_year_one_instead_of_overflowing() -> None:
    assert window_start(YEAR_ONE, limits.MAX_WINDOW_SECONDS) == datetime.min.replace(tzinfo=UTC)
    assert window_start(NOW, 3600) == NOW - timedelta(hours=1)


async def test_a_breach_of_year_one_is_counted_and_later_breaches_still_act(
    store: GrantStore, tmp_path: Path
) -> None:
    """It overflowed ``happened - window`` and was retried forever (issue 9)."""
    grant = issued_grant(store, "grt_year_one", revoke_after_critical=2)
    relay = Relay()
    policy = BreachPolicy(store, relay)  # type: ignore[arg-type]
    recent = breach("grt_year_one")
    ancient = recent.model_copy(
        update={"data": recent.data.model_copy(update={"access_occurred_at": YEAR_ONE})}
    )
    await policy(ancient, Inbound.at(None))
    assert store.is_processed(str(ancient.event_id))
    assert store.get(grant.grant_id).lifecycle == "active"  # type: ignore[union-attr]

    for _ in range(2):
        await policy(breach("grt_year_one"), Inbound.at(None))
    assert store.get(grant.grant_id).lifecycle == "revoked"  # type: ignore[union-attr]
