"""A carveout's revocation is announced once per partition of carveout.grants its grants
fall in, keyed so that each grant's revocation lands beside its earlier versions."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from carveout_grant.domain import Grant, GrantRequest, apply, issue, revoke_in_parts
from carveout_grant.partitions import partition_of


@given(st.text(min_size=1, max_size=200), st.integers(min_value=1, max_value=64))
def test_the_partition_is_the_producer_s(key: str, count: int) -> None:
    partitions = list(range(count))
    assert partition_of(key, count) == DefaultPartitioner()(key.encode(), partitions, partitions)


NOW = datetime(2026, 7, 1, tzinfo=UTC)


def grant(grant_id: str) -> Grant:
    request = GrantRequest.model_validate(
        {
            "carveout_id": "co-parts",
            "model_id": "mythos-preview",
            "grantee": {"id": f"org-{grant_id}", "name": "Example", "contacts": []},
            "valid_from": "2026-06-01T00:00:00Z",
            "valid_until": "2026-12-01T00:00:00Z",
        }
    )
    issued = apply(None, issue(request, grant_id=grant_id, by="regulator", now=NOW))
    assert issued is not None
    return issued


def test_each_partition_s_grants_are_revoked_by_one_event_keyed_in_that_partition() -> None:
    grants = [grant(f"grt_{n:02d}") for n in range(12)]
    events = revoke_in_parts(
        grants,
        "test",
        carveout_id="co-parts",
        by="r",
        now=NOW,
        partition_of=lambda g: partition_of(g, 4),
    )
    assert 1 < len(events) <= 4
    named = [g for event in events for g in event.data.grant_ids]
    assert sorted(named) == sorted(g.grant_id for g in grants), "each grant revoked once"
    for event in events:
        where = partition_of(event.key, 4)
        assert {partition_of(g, 4) for g in event.data.grant_ids} == {where}
        assert set(event.data.grant_versions) == set(event.data.grant_ids)
    assert len({e.event_id for e in events}) == len(events)


def test_with_one_partition_one_event_revokes_them_all() -> None:
    grants = [grant(f"grt_{n:02d}") for n in range(5)]
    [event] = revoke_in_parts(
        grants, "test", carveout_id="co-parts", by="r", now=NOW, partition_of=lambda _: 0
    )
    assert event.data.grant_ids == [g.grant_id for g in grants]
