"""Rebuilding the grant store from a real broker's log (``carveout_grant.replay``).

The grant service runs in process (the component harness: its API, its breach policy and
its outbox relay, on FastStream's test broker). Regulators issue, amend and reinstate
grants; breaches suspend one grant and revoke another by policy, one more arrives after
the revocation, and the breach topic also holds a warning, a breach of no grant, a
breach of a grant unknown here, a repeat and a record that is not JSON. What the relay
published and the breaches it consumed are then appended to the real broker's topics,
and ``replay`` must rebuild the live store exactly (same digest), publishing nothing.

The broker is shared with other tests: the live store starts as a replay of whatever
is on the log already, and the counts are compared with that first replay.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from carveout_contracts import topics
from carveout_contracts.common import iso_utc
from carveout_grant import replay as grant_replay
from carveout_grant.store import GrantStore
from carveout_ops.broker import ensure_topics
from carveout_runtime.logread import log_ends, read_all
from carveout_runtime.replay import NotAFreshStore
from carveout_runtime.stores import make_engine

from .conftest import REGULATOR, GrantHarness, Starter

pytestmark = pytest.mark.broker

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"


def breach(
    grant_id: str | None, happened: datetime, *, severity: str = "critical", grantee: str
) -> bytes:
    event: dict[str, Any] = json.loads((GOLDEN / "condition.breached.v1.json").read_text())
    event.update(event_id=str(uuid.uuid4()), key=grant_id or grantee, occurred_at=iso_utc(happened))
    event["data"].update(
        grant_id=grant_id,
        grant_version=1 if grant_id else None,
        grantee_id=grantee,
        severity=severity,
        breach_id=f"brc_{uuid.uuid4().hex[:16]}",
        access_event_id=str(uuid.uuid4()),
        access_occurred_at=iso_utc(happened),
    )
    for violation in event["data"]["violations"]:
        violation["severity"] = severity
    return json.dumps(event).encode()


def ack_record(kind: str, data: dict[str, Any], key: str, at: datetime) -> bytes:
    """An enforcement.applied or enforcement.heartbeat, as enforcement would publish it."""
    event: dict[str, Any] = json.loads((GOLDEN / f"enforcement.{kind}.v1.json").read_text())
    event.update(event_id=str(uuid.uuid4()), key=key, occurred_at=iso_utc(at))
    event["data"].update(data)
    return json.dumps(event).encode()


def breach_id(value: bytes) -> str:
    return str(json.loads(value)["data"]["breach_id"])


def breach_id_or_none(value: bytes) -> str | None:
    try:
        return breach_id(value)
    except (ValueError, KeyError, TypeError):
        return None


async def append(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes | None, dict[str, str]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value, key, headers in records:
            await producer.send_and_wait(
                topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()]
            )
    finally:
        await producer.stop()


async def settled(harness: GrantHarness, events: int) -> None:
    """Wait until the relay has published ``events`` events and has nothing left."""
    store: GrantStore = harness.service.store
    async with asyncio.timeout(10):
        while True:
            if len(harness.published) >= events and not store.unpublished():
                return
            await asyncio.sleep(0.01)


async def test_replay_rebuilds_the_live_grant_store_and_publishes_nothing(
    kafka_bootstrap: str, start_grant: Starter, demo_body: dict[str, Any], tmp_path: Path
) -> None:
    bootstrap = kafka_bootstrap
    await ensure_topics(bootstrap)
    live_url = f"sqlite:///{tmp_path}/grant.db"  # the harness's store
    before = await grant_replay.replay(bootstrap=bootstrap, database_url=live_url)

    suffix = uuid.uuid4().hex[:8]
    grantee = f"org-replay-{suffix}"
    now = datetime.now(UTC).replace(microsecond=0)
    json_headers = {"content-type": "application/json"}

    def body(carveout: str, policy: dict[str, Any]) -> dict[str, Any]:
        return {
            **demo_body,
            "carveout_id": f"{carveout}-{suffix}",
            "grantee": {**demo_body["grantee"], "id": grantee},
            "breach_policy": {"window_seconds": 3600, **policy},
        }

    async with start_grant() as live:
        client = live.client
        revoked = await client.post(
            "/v1/grants",
            json=body("co-revoke", {"revoke_after_critical": 3, "suspend_after_critical": None}),
            headers=REGULATOR,
        )
        suspended = await client.post(
            "/v1/grants",
            json=body("co-suspend", {"revoke_after_critical": None, "suspend_after_critical": 2}),
            headers=REGULATOR,
        )
        assert revoked.status_code == suspended.status_code == 201, revoked.text + suspended.text
        g1, g2 = revoked.json()["grant_id"], suspended.json()["grant_id"]
        amended = await client.post(
            f"/v1/grants/{g2}/amend",
            json={
                "valid_from": demo_body["valid_from"],
                "valid_until": iso_utc(now + timedelta(days=30)),
                "conditions": demo_body["conditions"][:3],
                "breach_policy": {"suspend_after_critical": 2, "window_seconds": 3600},
                "reason": "narrower terms",
            },
            headers=REGULATOR,
        )
        assert amended.status_code == 200, amended.text

        def crit(grant_id: str | None, seconds_ago: int) -> bytes:
            return breach(grant_id, now - timedelta(seconds=seconds_ago), grantee=grantee)

        # First: two critical breaches suspend g2 (its policy), then a regulator reinstates.
        first = [crit(g2, 50), crit(g2, 45)]
        for value in first:
            await live.broker.publish(value, topics.BREACHES, key=g2.encode(), headers=json_headers)
        assert (await client.get(f"/v1/grants/{g2}", headers=REGULATOR)).json()["status"] == (
            "suspended"
        )
        reinstated = await client.post(
            f"/v1/grants/{g2}/reinstate", json={"reason": "remedied"}, headers=REGULATOR
        )
        assert reinstated.status_code == 200, reinstated.text

        # Then: three revoke g1; one more after; and those that count for nothing.
        b1 = crit(g1, 30)
        second = [
            b1,
            crit(g1, 20),
            crit(g1, 10),
            crit(g1, 5),  # g1 is revoked already: kept all the same
            breach(g1, now - timedelta(seconds=4), severity="warning", grantee=grantee),
            crit(None, 3),  # no grant matched
            crit(f"grt_elsewhere_{suffix}", 2),  # a grant this service never issued
            b1,  # a repeat
            b"{not json",
        ]
        for value in second:
            await live.broker.publish(value, topics.BREACHES, key=g1.encode(), headers=json_headers)
        assert (await client.get(f"/v1/grants/{g1}", headers=REGULATOR)).json()["status"] == (
            "revoked"
        )
        # issued x2, amended, suspended (policy), reinstated, revoked (policy)
        await settled(live, 6)
        grant_events = list(live.published)

        # Enforcement's acks: one applied twice (a restarted replica's store was lost: the
        # earlier time stands), one more, and a heartbeat (kept, but not in the digest).
        enforcer = f"enf-replay-{suffix}"
        issued_event = json.loads(grant_events[0].value)["event_id"]

        def applied(grant_id: str, version: int, event_id: str, at: datetime) -> dict[str, Any]:
            return {
                "enforcer_id": enforcer,
                "grant_id": grant_id,
                "version": version,
                "grant_event_id": event_id,
                "applied_at": iso_utc(at),
            }

        beat = {"enforcer_id": enforcer, "grants_positions": {"0": 3}, "at": iso_utc(now)}
        acks = [
            ack_record("applied", applied(g1, 1, issued_event, now), g1, now),
            ack_record(
                "applied", applied(g1, 1, issued_event, now + timedelta(seconds=9)), g1, now
            ),
            ack_record("applied", applied(g2, 1, issued_event, now), g2, now),
            ack_record("heartbeat", beat, enforcer, now),
        ]
        for value in acks:
            await live.broker.publish(value, topics.ACKS, key=g1.encode(), headers=json_headers)

    assert [json.loads(r.value)["type"] for r in grant_events] == [
        "grant.issued",
        "grant.issued",
        "grant.amended",
        "grant.suspended",
        "grant.reinstated",
        "carveout.revoked",
    ]
    await append(bootstrap, topics.GRANTS, [(r.value, r.key, r.headers) for r in grant_events])
    await append(bootstrap, topics.BREACHES, [(v, g2.encode(), json_headers) for v in first])
    await append(bootstrap, topics.BREACHES, [(v, g1.encode(), json_headers) for v in second])
    await append(bootstrap, topics.ACKS, [(v, g1.encode(), json_headers) for v in acks])

    live_digest = grant_replay.digest(live_url)
    ends = await log_ends(bootstrap, topics.ALL_TOPICS)
    rebuilt_url = f"sqlite:///{tmp_path}/rebuilt.db"

    report = await grant_replay.replay(bootstrap=bootstrap, database_url=rebuilt_url)

    assert await log_ends(bootstrap, topics.ALL_TOPICS) == ends  # nothing published
    assert report.digest == live_digest

    def grown(key: str) -> int:
        return report.records.get(key, 0) - before.records.get(key, 0)

    assert grown(topics.GRANTS) == 6
    assert grown(topics.BREACHES) == len(first) + len(second)
    assert report.poison - before.poison == 1
    assert report.skipped - before.skipped == 1  # the repeat
    rows = {name: t["rows"] for name, t in report.digest["tables"].items()}
    rows_before = {name: t["rows"] for name, t in before.digest["tables"].items()}
    # Counted: g2's two, g1's four (one after the revocation), the unknown grant's one.
    assert rows["policy_breaches"] - rows_before["policy_breaches"] == 7
    assert rows["grants"] - rows_before["grants"] == 2
    assert rows["enforcement_acks"] - rows_before["enforcement_acks"] == 2

    rebuilt = GrantStore(make_engine(rebuilt_url))
    try:
        g1_now, g2_now = rebuilt.get(g1), rebuilt.get(g2)
        assert g1_now is not None and g2_now is not None
        assert (g1_now.lifecycle, g1_now.version) == ("revoked", 2)
        assert (g2_now.lifecycle, g2_now.version) == ("active", 4)
        assert rebuilt.unpublished() == []  # recorded as published: nothing to relay
        window = now - timedelta(hours=1)
        assert len(rebuilt.critical_breaches(g1, window)) == 4
        assert len(rebuilt.critical_breaches(f"grt_elsewhere_{suffix}", window)) == 1
    finally:
        rebuilt.engine.dispose()

    with pytest.raises(NotAFreshStore, match="'grants'"):
        await grant_replay.replay(bootstrap=bootstrap, database_url=rebuilt_url)

    # --since: every grant event, and only the breaches the log received from then on.
    breach_records = await read_all(bootstrap, [topics.BREACHES])
    stamp: dict[str | None, int] = {}
    for record in breach_records:  # each breach's first record
        stamp.setdefault(breach_id_or_none(record.value), record.timestamp)
    second_from = min(stamp[breach_id(v)] for v in second[:-1])
    assert max(stamp[breach_id(v)] for v in first) < second_from
    recent = await grant_replay.replay(
        bootstrap=bootstrap,
        database_url=f"sqlite:///{tmp_path}/recent.db",
        since=datetime.fromtimestamp(second_from / 1000, UTC),
    )
    tables, live_tables = recent.digest["tables"], live_digest["tables"]
    assert tables["grants"] == live_tables["grants"]
    assert tables["grant_events"] == live_tables["grant_events"]
    assert tables["policy_breaches"]["rows"] == 5  # g1's four and the unknown grant's one
    older = sum(1 for r in breach_records if r.timestamp < second_from)
    assert older >= len(first)
    assert recent.skipped >= older + 1  # and the repeat
