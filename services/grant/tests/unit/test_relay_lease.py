"""The relay lease rule: who may relay the outbox, given the lease row, a holder and now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from carveout_grant.lease import Lease, claim, holds, next_ask

NOW = datetime(2026, 7, 1, 12, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def test_no_lease_is_taken_by_whoever_asks() -> None:
    assert claim(None, "a", NOW, 3) == Lease("a", at(3))


def test_a_running_lease_is_the_holders_alone() -> None:
    lease = Lease("a", at(3))
    assert claim(lease, "b", at(2.999), 3) is None
    assert holds(lease, "a", at(2.999)) and not holds(lease, "b", at(1))


def test_the_holder_renews_from_now() -> None:
    assert claim(Lease("a", at(3)), "a", at(1), 3) == Lease("a", at(4))


def test_an_ended_lease_is_anyones_and_no_longer_the_old_holders() -> None:
    lease = Lease("a", at(3))
    assert not holds(lease, "a", at(3))  # the end is exclusive: no instant with two holders
    assert claim(lease, "b", at(3), 3) == Lease("b", at(6))
    assert claim(lease, "a", at(5), 3) == Lease("a", at(8))  # the old holder may take it back


def test_a_lease_renewed_every_second_never_ends_and_its_end_frees_it() -> None:
    lease: Lease | None = None
    for second in range(10):
        lease = claim(lease, "a", at(second), 3)
        assert claim(lease, "b", at(second + 0.5), 3) is None
    assert lease == Lease("a", at(12))
    assert claim(lease, "b", at(12), 3) == Lease("b", at(15))


def test_asks_come_every_period_or_when_anothers_lease_ends() -> None:
    assert next_ask(None, None, "a", 1) is None
    assert next_ask(NOW, Lease("a", at(3)), "a", 1) == at(1)
    assert next_ask(NOW, Lease("b", at(0.25)), "a", 1) == at(0.25)
    assert next_ask(NOW, Lease("b", at(3)), "a", 1) == at(1)
