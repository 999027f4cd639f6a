"""The grant store on SQLite and PostgreSQL: grants, the outbox, filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from carveout_contracts import Grantee
from carveout_grant.domain import GrantRequest, apply, issue
from carveout_grant.store import GrantListing, GrantStore
from carveout_runtime.stores import make_engine

NOW = datetime(2026, 7, 1, tzinfo=UTC)


def request(grantee: str = "org-netsec", days: int = 30) -> GrantRequest:
    return GrantRequest(
        carveout_id="co-mythos-2026",
        model_id="mythos-preview",
        grantee=Grantee(id=grantee, name=grantee),
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=days),
    )


def test_grant_and_its_event_are_recorded_together_and_relayed_in_order(
    database_url: str,
) -> None:
    store = GrantStore(make_engine(database_url))
    seqs = []
    for n in range(3):
        event = issue(request(), grant_id=f"grt_{n}", by="regulator", now=NOW)
        seqs.append(store.record([apply(None, event)], event, traceparent=None))
    assert seqs == sorted(seqs)
    assert store.get("grt_1") is not None
    assert store.counts() == (3, 0)

    pending = store.unpublished()
    assert [row.grant_id for row in pending] == ["grt_0", "grt_1", "grt_2"]
    store.mark_published([pending[0].seq or 0], NOW)
    assert [row.grant_id for row in store.unpublished()] == ["grt_1", "grt_2"]
    assert store.counts() == (3, 1)

    assert store.mark_all_unpublished() == 1
    assert store.counts() == (3, 0)


def test_find_filters_by_grantee_and_status_and_pages(database_url: str) -> None:
    store = GrantStore(make_engine(database_url))
    expired_already = request("a").model_copy(update={"valid_until": NOW - timedelta(hours=1)})
    for n, req in enumerate([request("a"), expired_already, request("b"), request("a", 60)]):
        event = issue(req, grant_id=f"grt_{n}", by="regulator", now=NOW)
        store.record([apply(None, event)], event, traceparent=None)

    grants, total = store.find(GrantListing(grantee_id="a"), NOW)
    assert total == 3 and {g.grant_id for g in grants} == {"grt_0", "grt_1", "grt_3"}
    expired, total = store.find(GrantListing(status="expired"), NOW)
    assert total == 1 and expired[0].grant_id == "grt_1"
    _, total = store.find(GrantListing(grantee_id="a", status="active"), NOW)
    assert total == 2
    page, total = store.find(GrantListing(limit=2, offset=2), NOW)
    assert total == 4 and [g.grant_id for g in page] == ["grt_2", "grt_3"]
