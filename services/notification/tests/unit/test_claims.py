"""The claim rules: who may take a notification, who may record its outcome, when a lease
is renewed and when others may start it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carveout_notification.claims import Lease, claimable, holds, startable_at

T0 = datetime(2026, 7, 1, tzinfo=UTC)
S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("claimed_by", "lease_until", "now", "expected"),
    [
        (None, None, T0, True),  # nobody holds it
        ("a", T0 + S, T0, False),  # a's lease runs
        ("a", T0, T0, False),  # to the end of its last instant
        ("a", T0 - S, T0, True),  # ran out: a is dead or stalled
        ("a", None, T0, True),  # a claim without a lease binds nobody
    ],
)
def test_a_notification_is_claimable_when_free_or_its_lease_ran_out(
    claimed_by: str | None, lease_until: datetime | None, now: datetime, expected: bool
) -> None:
    assert claimable(claimed_by, lease_until, now) is expected


def test_only_the_holder_records_an_outcome_even_after_its_lease_ran_out() -> None:
    assert holds("a", "a")
    assert not holds("b", "a")  # taken over: a's late outcome is not recorded
    assert not holds(None, "a")  # released: whoever claims it next records


def test_others_may_start_a_notification_at_its_time_and_not_before_its_lease_ends() -> None:
    assert startable_at(T0, None, None) == T0
    assert startable_at(T0, "a", T0 + 5 * S) == T0 + 5 * S
    assert startable_at(T0 + 9 * S, "a", T0 + 5 * S) == T0 + 9 * S  # a retry scheduled later


def test_a_lease_is_renewed_once_a_third_of_it_has_passed() -> None:
    lease = Lease(seconds=9)
    until = lease.until(T0)
    assert until == T0 + 9 * S
    assert not lease.renewal_due(until, T0)
    assert not lease.renewal_due(until, T0 + 2.9 * S)
    assert lease.renewal_due(until, T0 + 3 * S)
    assert lease.renewal_due(until, T0 + 20 * S)  # late, still renewed if still held
    assert lease.check_every == pytest.approx(1.5)  # twice per renewal period


@pytest.mark.parametrize(("seconds", "renew_after"), [(0, 1 / 3), (-1, 1 / 3), (5, 0), (5, 1)])
def test_a_lease_needs_a_length_and_a_renewal_point_inside_it(
    seconds: float, renew_after: float
) -> None:
    with pytest.raises(ValueError, match="lease"):
        Lease(seconds, renew_after)
