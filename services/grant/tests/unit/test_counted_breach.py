"""Which breaches a breach policy counts (``counted_breach``), and that the grant service
keeps each of them whatever the grant's state, so its breach table depends on the log alone
(and a replay, which never acts on breaches, rebuilds the same table)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carveout_contracts import ConditionBreached, codec, topics
from carveout_contracts.common import iso_utc
from carveout_grant.domain import GrantRequest, apply, issue, revoke, suspend
from carveout_grant.handlers.breaches import BreachPolicy, counted_breach
from carveout_grant.store import GrantStore, PolicyBreach
from carveout_runtime.inbound import Inbound
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
NOW = datetime.now(UTC).replace(microsecond=0)


def breach(
    grant_id: str | None = "grt_counted",
    *,
    severity: str = "critical",
    access_occurred_at: datetime | None = NOW - timedelta(seconds=30),
    occurred_at: datetime = NOW,
) -> ConditionBreached:
    raw: dict[str, Any] = json.loads((GOLDEN / "condition.breached.v1.json").read_text())
    raw["event_id"] = str(uuid.uuid4())
    raw["occurred_at"] = iso_utc(occurred_at)
    raw["key"] = grant_id or "org-netsec"
    raw["data"].update(
        grant_id=grant_id,
        grant_version=1 if grant_id else None,
        breach_id=f"brc_{uuid.uuid4().hex[:16]}",
        severity=severity,
        access_occurred_at=iso_utc(access_occurred_at) if access_occurred_at else None,
    )
    for violation in raw["data"]["violations"]:
        violation["severity"] = severity
    event: ConditionBreached = codec.decode(topics.BREACHES, json.dumps(raw).encode())
    return event


# --------------------------------------------------------------------------- counted_breach


def test_a_critical_breach_of_a_grant_counts_when_its_access_happened() -> None:
    event = breach()
    counted = counted_breach(event)

    assert isinstance(counted, PolicyBreach)
    assert counted.breach_id == event.data.breach_id
    assert counted.grant_id == "grt_counted"
    assert counted.occurred_at == iso_utc(NOW - timedelta(seconds=30))


def test_without_the_access_time_the_breach_counts_when_it_was_found() -> None:
    counted = counted_breach(breach(access_occurred_at=None, occurred_at=NOW))
    assert counted is not None
    assert counted.occurred_at == iso_utc(NOW)


@pytest.mark.parametrize(
    "event",
    [breach(severity="warning"), breach(grant_id=None), breach(grant_id=None, severity="warning")],
    ids=["warning", "no-grant", "warning-no-grant"],
)
def test_warnings_and_breaches_of_no_grant_do_not_count(event: ConditionBreached) -> None:
    assert counted_breach(event) is None


# --------------------------------------------------------------------------- BreachPolicy


class Relay:
    """Stands in for the outbox relay: the policy only wakes it."""

    def __init__(self) -> None:
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GrantStore]:
    made = GrantStore(make_engine(f"sqlite:///{tmp_path}/grant.db"))
    yield made
    made.engine.dispose()


def issued_grant(store: GrantStore, grant_id: str, **policy: Any) -> Any:
    request = GrantRequest.model_validate(
        {
            "carveout_id": "co-counted",
            "model_id": "mythos-preview",
            "grantee": {"id": "org-netsec", "name": "Example", "contacts": []},
            "valid_from": iso_utc(NOW - timedelta(days=1)),
            "valid_until": iso_utc(NOW + timedelta(days=30)),
            "conditions": [],
            "breach_policy": {
                "suspend_after_critical": None,
                "revoke_after_critical": None,
                "window_seconds": 3600,
                **policy,
            },
        }
    )
    event = issue(request, grant_id=grant_id, by="regulator", now=NOW - timedelta(hours=1))
    grant = apply(None, event)
    store.record([grant], event, None)
    return grant


def counted(store: GrantStore, grant_id: str) -> list[str]:
    return sorted(b for b, _ in store.critical_breaches(grant_id, NOW - timedelta(days=1)))


async def test_a_breach_of_a_revoked_grant_is_kept_and_orders_nothing(store: GrantStore) -> None:
    grant = issued_grant(store, "grt_revoked", revoke_after_critical=1)
    revocation = revoke([grant], "enough", carveout_id="co-counted", by="regulator", now=NOW)
    store.record([apply(grant, revocation)], revocation, None)
    events_before, _ = store.counts()
    relay = Relay()
    event = breach("grt_revoked")

    await BreachPolicy(store, relay)(event, Inbound.at(None))  # type: ignore[arg-type]

    assert counted(store, "grt_revoked") == [event.data.breach_id]
    assert store.is_processed(str(event.event_id))
    assert store.counts()[0] == events_before  # no action, no event
    assert relay.woken == 0
    current = store.get("grt_revoked")
    assert current is not None
    assert (current.lifecycle, current.version) == ("revoked", 2)


async def test_a_breach_of_a_grant_this_service_does_not_know_is_kept(store: GrantStore) -> None:
    event = breach("grt_never_issued_here")
    await BreachPolicy(store, Relay())(event, Inbound.at(None))  # type: ignore[arg-type]

    assert counted(store, "grt_never_issued_here") == [event.data.breach_id]
    assert store.is_processed(str(event.event_id))


async def test_a_breach_of_a_suspended_grant_is_kept(store: GrantStore) -> None:
    grant = issued_grant(store, "grt_suspended")
    suspension = suspend(grant, "paused", by="regulator", now=NOW - timedelta(minutes=5))
    store.record([apply(grant, suspension)], suspension, None)
    event = breach("grt_suspended")

    await BreachPolicy(store, Relay())(event, Inbound.at(None))  # type: ignore[arg-type]

    assert counted(store, "grt_suspended") == [event.data.breach_id]


@pytest.mark.parametrize(
    "event", [breach("grt_active", severity="warning"), breach(None)], ids=["warning", "no-grant"]
)
async def test_breaches_that_do_not_count_are_only_marked_processed(
    store: GrantStore, event: ConditionBreached
) -> None:
    issued_grant(store, "grt_active", revoke_after_critical=1)
    await BreachPolicy(store, Relay())(event, Inbound.at(None))  # type: ignore[arg-type]

    assert counted(store, "grt_active") == []
    assert store.is_processed(str(event.event_id))
    grant = store.get("grt_active")
    assert grant is not None
    assert grant.lifecycle == "active"


async def test_the_breach_that_trips_the_policy_is_kept_with_the_action(store: GrantStore) -> None:
    issued_grant(store, "grt_tripped", revoke_after_critical=1)
    relay = Relay()
    event = breach("grt_tripped")

    await BreachPolicy(store, relay)(event, Inbound.at(None))  # type: ignore[arg-type]

    assert counted(store, "grt_tripped") == [event.data.breach_id]
    grant = store.get("grt_tripped")
    assert grant is not None
    assert grant.lifecycle == "revoked"
    assert relay.woken == 1
