"""Faults on the real broker: crashes, restarts, duplicates, poison and a store gone briefly.

Every test counts the effects at the end (decisions, breaches, notifications, webhook
deliveries, dead letters) and requires each exactly once: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from carveout_contracts import codec, topics
from carveout_ops.load import publish

from .kafka import access_event, signature
from .receivers import WebhookReceiver, signature_verifies
from .system import SERVICES, System, wait_for

pytestmark = pytest.mark.broker

T0 = datetime(2026, 9, 10, 11, 0, tzinfo=UTC)
GOLDEN = Path(__file__).resolve().parents[1] / "contracts" / "golden"
NO_POLICY = {"suspend_after_critical": None, "revoke_after_critical": None, "window_seconds": 3600}
REVOKE_AFTER_3 = {
    "suspend_after_critical": None,
    "revoke_after_critical": 3,
    "window_seconds": 3600,
}
FAST_RETRIES = {
    "CARVEOUT_NOTIFICATION_RETRY_BASE_SECONDS": "0.3",
    "CARVEOUT_NOTIFICATION_DELIVERY_POLL_SECONDS": "0.1",
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """One system for the module; each test works on grantees of its own."""
    running = System(
        tmp_path_factory.mktemp("var"),
        external_bootstrap=os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP"),
        extra_env=FAST_RETRIES,
    )
    try:
        running.start()  # inside: a system that never gets ready is stopped too
        yield running
    finally:
        running.stop()


@pytest.fixture
def hooks() -> Iterator[Callable[[int], WebhookReceiver]]:
    """Webhook receivers, each failing the first ``failures`` attempts of every delivery."""
    started: list[WebhookReceiver] = []

    def start(failures: int) -> WebhookReceiver:
        receiver = WebhookReceiver(failures=failures)
        receiver.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


# --------------------------------------------------------------------------- helpers


def get(system: System, service: str, path: str, **params: Any) -> Any:
    response = system.call(service, "GET", path, role="auditor", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def total(system: System, path: str, **params: Any) -> int:
    """``total`` of an enforcement listing (``/v1/decisions``, ``/v1/breaches``)."""
    found: int = get(system, "enforcement", path, limit=1, **params)["total"]
    return found


def every_item(system: System, service: str, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = get(system, service, path, limit=1000, offset=len(items), **params)
        items += page["items"]
        if not page["items"] or len(items) >= page["total"]:
            return items


def delivered(system: System, *subscription_ids: str, count: int) -> list[dict[str, Any]]:
    """The subscriptions' notifications, once ``count`` of them are listed and all delivered
    (a receiver accepts a webhook a moment before the service records the outcome)."""

    def listed() -> list[dict[str, Any]] | None:
        items = [
            n
            for sid in subscription_ids
            for n in every_item(system, "notification", "/v1/notifications", subscription_id=sid)
        ]
        done = len(items) >= count and all(n["status"] == "delivered" for n in items)
        return items if done else None

    return wait_for(listed, 10, f"{count} notifications delivered", every=0.1)


def issue(
    system: System,
    demo_grant: dict[str, Any],
    grantee: str,
    hook: WebhookReceiver | None,
    policy: dict[str, Any],
) -> str:
    """Issue a grant and wait until enforcement and notification both know it."""
    contacts = [{"kind": "webhook", "address": hook.url}] if hook else []
    body = {
        **demo_grant,
        "grantee": {**demo_grant["grantee"], "id": grantee, "contacts": contacts},
        "breach_policy": policy,
    }
    response = system.call("grant", "POST", "/v1/grants", json=body)
    assert response.status_code == 201, response.text
    grant_id: str = response.json()["grant_id"]
    wait_for(lambda: enforcement_view(system, grant_id), 5, "grant in enforcement")
    wait_for(lambda: contacts_view(system, grant_id), 5, "grant contacts in notification")
    return grant_id


def enforcement_view(system: System, grant_id: str) -> dict[str, Any] | None:
    response = system.call("enforcement", "GET", f"/v1/grants/{grant_id}", role="auditor")
    return response.json() if response.status_code == 200 else None


def contacts_view(system: System, grant_id: str) -> dict[str, Any] | None:
    response = system.call("notification", "GET", f"/v1/grants/{grant_id}/contacts", role="auditor")
    return response.json() if response.status_code == 200 else None


def contact_subscription(system: System, grant_id: str) -> dict[str, Any]:
    subscriptions = system.call("notification", "GET", "/v1/subscriptions").json()
    [mine] = [s for s in subscriptions if s["grant_id"] == grant_id]
    return dict(mine)


def bodies(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    """The accepted webhook bodies, one per accepted delivery."""
    with receiver._lock:
        return [json.loads(d.body) for d in receiver.deliveries if d.accepted]


def accepted_breaches(receiver: WebhookReceiver) -> Counter[str]:
    return Counter(
        b["data"]["breach_id"] for b in bodies(receiver) if b["type"] == "condition.breached"
    )


def ready(system: System, service: str) -> bool:
    return system.call(service, "GET", "/readyz", role=None).status_code == 200


def pid_of(system: System, service: str) -> int:
    return int((system.var_dir / "run" / f"{service}.pid").read_text())


def wait_restarted(system: System, service: str, old_pid: int) -> None:
    """The supervisor of ``carveout up`` has started a new process and it is ready."""
    wait_for(lambda: pid_of(system, service) != old_pid, 15, f"a new {service} process")
    wait_for(lambda: ready(system, service), 60, f"{service} ready after the restart")


def to_bytes(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


async def produce_at(
    bootstrap: str, topic: str, values: list[bytes], key: str, *, signed: bool = True
) -> list[tuple[int, int]]:
    """Produce in order, signed as the topic's service signs (unless ``signed`` is false);
    returns each message's (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=2)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic,
                value,
                key=key.encode(),
                headers=signature(bootstrap, topic, value) if signed else [],
            )
            for value in values
        ]
        metadata = await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metadata]


async def read_raw(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic``, from the beginning up to its end as of now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(30):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=100)
                for records in batch.values():
                    found += records
        return found
    finally:
        await consumer.stop()


def events_on(system: System, topic: str) -> list[tuple[ConsumerRecord[bytes, bytes], Any]]:
    """Every decodable record on ``topic`` with its event (poison left out)."""
    out = []
    for record in asyncio.run(read_raw(system.bootstrap, topic)):
        try:
            out.append((record, codec.decode(topic, record.value)))
        except codec.PoisonMessage:
            continue
    return out


def breaches_on_topic(system: System, grant_id: str) -> list[Any]:
    return [e.data for _, e in events_on(system, topics.BREACHES) if e.data.grant_id == grant_id]


def golden(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((GOLDEN / f"{name}.v1.json").read_text())
    return event


class Locked:
    """Holds SQLite's write lock on service stores (``BEGIN EXCLUSIVE``) until released."""

    def __init__(self, system: System, *services: str) -> None:
        self.connections = []
        for service in services:
            connection = sqlite3.connect(
                system.var_dir / f"{service}.db", timeout=10, isolation_level=None
            )
            connection.execute("BEGIN EXCLUSIVE")
            self.connections.append(connection)

    def release(self) -> None:
        for connection in self.connections:
            connection.execute("ROLLBACK")
            connection.close()
        self.connections = []


# --------------------------------------------------------------------------- 1. crash


def test_enforcement_killed_mid_batch_under_load_loses_and_duplicates_nothing(
    system: System, demo_grant: dict[str, Any], hooks: Callable[[int], WebhookReceiver]
) -> None:
    """SIGKILL enforcement mid-stream (30,000 accesses, some breaching, some sent twice);
    the supervisor restarts it and every effect is there exactly once."""
    distinct, every_nth_breaches, duplicates = 30_000, 100, 2_000
    hook = hooks(0)
    grantee = "org-fault-kill"
    grant_id = issue(system, demo_grant, grantee, hook, REVOKE_AFTER_3)

    events = [
        access_event(
            grantee,
            T0 + timedelta(milliseconds=n),
            units=1,
            **({"user_country": "KP"} if n % every_nth_breaches == 0 else {}),
        )
        for n in range(distinct)
    ]
    breaching = {e["event_id"] for n, e in enumerate(events) if n % every_nth_breaches == 0}
    raw = [to_bytes(e) for e in events]
    rng = random.Random(11)
    half = distinct // 2
    again_early = rng.sample(range(half), duplicates // 2)
    again_any = [*rng.sample(range(distinct), duplicates // 2), 0, every_nth_breaches]
    stream = raw[:half] + [raw[n] for n in again_early] + raw[half:] + [raw[n] for n in again_any]

    failures: list[BaseException] = []

    def produce_all() -> None:
        try:
            asyncio.run(publish(system.bootstrap, iter(stream)))
        except BaseException as exc:
            failures.append(exc)

    producer = threading.Thread(target=produce_all, daemon=True)
    producer.start()

    wait_for(
        lambda: total(system, "/v1/decisions", grantee_id=grantee) >= 3_000,
        60,
        "decisions being recorded",
    )
    old_pid = pid_of(system, "enforcement")
    decided_before_kill = total(system, "/v1/decisions", grantee_id=grantee)
    os.kill(old_pid, signal.SIGKILL)
    assert decided_before_kill < distinct, "the kill came after every access was judged"

    wait_restarted(system, "enforcement", old_pid)
    producer.join(60)
    assert not producer.is_alive() and not failures, failures
    reported = f"enforcement exited with code -{signal.SIGKILL.value}" in system.output()
    assert reported, "the supervisor did not report the killed enforcement process"

    def all_decided() -> bool:
        decided = total(system, "/v1/decisions", grantee_id=grantee)
        assert decided <= distinct, f"{decided} decisions for {distinct} distinct accesses"
        return decided == distinct

    wait_for(all_decided, 90, f"a decision for each of {distinct} distinct accesses")
    assert total(system, "/v1/breaches", grantee_id=grantee) == len(breaching)

    # One decision per access, checked access by access in a few one-second windows
    # (a thousand accesses each): before the kill, and after it.
    for second in (0, distinct // 2000, distinct // 1000 - 1):
        since = T0 + timedelta(seconds=second)
        window = get(
            system,
            "enforcement",
            "/v1/decisions",
            grantee_id=grantee,
            since=since.isoformat().replace("+00:00", "Z"),
            until=(since + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
            limit=1000,
        )
        wanted = {e["event_id"] for e in events[second * 1000 : (second + 1) * 1000]}
        assert window["total"] == len(window["items"]) == len(wanted)
        assert {d["access_event_id"] for d in window["items"]} == wanted
        denied = {d["access_event_id"] for d in window["items"] if d["decision"] == "deny"}
        assert denied == wanted & breaching

    recorded = every_item(system, "enforcement", "/v1/breaches", grantee_id=grantee)
    breach_ids = {b["breach_id"] for b in recorded}
    assert len(breach_ids) == len(recorded) == len(breaching)
    assert {b["access_event_id"] for b in recorded} == breaching

    # Every breach reaches the topic (at least once: a crash may re-publish the same id).
    def all_published() -> bool:
        return {b.breach_id for b in breaches_on_topic(system, grant_id)} == breach_ids

    wait_for(all_published, 30, "every breach on carveout.breaches", every=0.5)
    on_topic = breaches_on_topic(system, grant_id)
    assert {str(b.access_event_id) for b in on_topic} == breaching

    # Downstream: one notification per breach, delivered once; one policy revocation.
    def all_told() -> bool:
        return set(accepted_breaches(hook)) == breach_ids

    wait_for(all_told, 60, "every breach told to the grant's contact", every=0.2)
    wait_for(
        lambda: any(b["type"] == "carveout.revoked" for b in bodies(hook)), 10, "the revocation"
    )
    assert set(accepted_breaches(hook).values()) == {1}
    assert set(hook.accepted().values()) == {1}
    types = Counter(b["type"] for b in bodies(hook))
    assert types == {
        "grant.issued": 1,
        "condition.breached": len(breaching),
        "carveout.revoked": 1,
    }
    subscription = contact_subscription(system, grant_id)
    listed = delivered(system, subscription["subscription_id"], count=len(breaching) + 2)
    assert len(listed) == len(breaching) + 2
    grant = system.call("grant", "GET", f"/v1/grants/{grant_id}", role="auditor").json()
    assert (grant["version"], grant["status"]) == (2, "revoked")
    revocations = [
        e
        for _, e in events_on(system, topics.GRANTS)
        if e.type == "carveout.revoked" and grant_id in e.data.grant_ids
    ]
    assert len(revocations) == 1


# --------------------------------------------------------------------------- 2. crash


def test_notification_killed_mid_retry_delivers_each_once(
    system: System, demo_grant: dict[str, Any], hooks: Callable[[int], WebhookReceiver]
) -> None:
    """SIGKILL notification after a first refused webhook: after the restart each
    (event, subscription) is accepted once, signed, and listed as delivered."""
    hook = hooks(2)
    grantee = "org-fault-notify"
    regulator = system.call(
        "notification",
        "POST",
        "/v1/subscriptions",
        json={
            "channel": "webhook",
            "address": hook.url,
            "event_types": ["grant.issued", "carveout.revoked"],
            "grantee_id": grantee,
        },
    )
    assert regulator.status_code == 201, regulator.text
    body = {
        **demo_grant,
        "grantee": {
            **demo_grant["grantee"],
            "id": grantee,
            "contacts": [{"kind": "webhook", "address": hook.url}],
        },
        "breach_policy": NO_POLICY,
    }
    response = system.call("grant", "POST", "/v1/grants", json=body)
    assert response.status_code == 201, response.text
    grant_id = response.json()["grant_id"]

    wait_for(lambda: hook.attempts(), 10, "a first, failed attempt", every=0.01)
    old_pid = pid_of(system, "notification")
    os.kill(old_pid, signal.SIGKILL)
    assert not hook.accepted()
    # A regulator action while notification is down is told after it comes back.
    revoked = system.call(
        "grant", "POST", f"/v1/grants/{grant_id}/revoke", json={"reason": "fault test"}
    )
    assert revoked.status_code == 200, revoked.text
    wait_restarted(system, "notification", old_pid)

    wait_for(lambda: len(hook.accepted()) >= 4, 30, "four deliveries after the restart")
    contact = contact_subscription(system, grant_id)
    # Listings never show a secret: the contact's deliveries are checked for a signature.
    mine = {regulator.json()["subscription_id"]: regulator.json()["secret"]}
    mine[contact["subscription_id"]] = ""
    listed = delivered(system, *mine, count=4)
    assert sorted((n["subscription_id"], n["event_type"]) for n in listed) == sorted(
        (sid, kind) for sid in mine for kind in ("grant.issued", "carveout.revoked")
    )
    assert set(hook.accepted()) == {n["notification_id"] for n in listed}
    assert set(hook.accepted().values()) == {1}  # exactly one accepted delivery each
    assert set(hook.attempts().values()) == {3}  # after two refusals each
    secret_of = {n["notification_id"]: mine[n["subscription_id"]] for n in listed}
    accepted = [d for d in hook.deliveries if d.accepted]
    assert all(
        signature_verifies(d, secret_of[d.webhook_id]) if secret_of[d.webhook_id] else d.signature
        for d in accepted
    )


# --------------------------------------------------------------------------- 3. duplicates


def test_duplicated_events_have_one_effect_each(
    system: System, demo_grant: dict[str, Any], hooks: Callable[[int], WebhookReceiver]
) -> None:
    """Accesses, a grant event and breaches delivered twice or more: one effect each."""
    hook = hooks(0)
    grantee = "org-fault-dupes"
    grant_id = issue(system, demo_grant, grantee, hook, NO_POLICY)
    events = [
        access_event(
            grantee, T0 + timedelta(seconds=n), **({"user_country": "RU"} if n % 3 else {})
        )
        for n in range(30)
    ]
    breaching = {e["event_id"] for n, e in enumerate(events) if n % 3}
    raw = [to_bytes(e) for e in events]
    [issued] = [
        r.value
        for r, e in events_on(system, topics.GRANTS)
        if e.type == "grant.issued" and e.data.grant_id == grant_id
    ]

    async def duplicates() -> None:
        await produce_at(system.bootstrap, topics.GRANTS, [issued, issued], grant_id)
        # every access twice: once in a row, and again after all of them
        twice = [value for value in raw for _ in range(2)] + raw
        await produce_at(system.bootstrap, topics.ACCESS, twice, grantee)

    asyncio.run(duplicates())
    wait_for(
        lambda: total(system, "/v1/decisions", grantee_id=grantee) == len(events),
        10,
        "a decision for each access",
    )
    wait_for(lambda: len(accepted_breaches(hook)) == len(breaching), 20, "each breach told")

    # The breaches again, as a re-publishing producer would send them, and the grant again.
    recorded = {
        e.data.breach_id: r.value
        for r, e in events_on(system, topics.BREACHES)
        if e.data.grant_id == grant_id
    }
    assert len(recorded) == len(breaching)
    asyncio.run(produce_at(system.bootstrap, topics.BREACHES, list(recorded.values()), grant_id))
    asyncio.run(produce_at(system.bootstrap, topics.GRANTS, [issued], grant_id))

    # Markers behind the duplicates on every topic: once they are handled, so are those.
    suspended = system.call(
        "grant", "POST", f"/v1/grants/{grant_id}/suspend", json={"reason": "marker"}
    )
    assert suspended.status_code == 200, suspended.text
    marker = access_event(grantee, T0 - timedelta(seconds=1), user_country="KP")
    asyncio.run(produce_at(system.bootstrap, topics.ACCESS, [to_bytes(marker)], grantee))

    def markers_handled() -> bool:
        told = [b for b in bodies(hook) if b["type"] == "condition.breached"]
        return (
            any(b["data"]["access_event_id"] == marker["event_id"] for b in told)
            and any(b["type"] == "grant.suspended" for b in bodies(hook))
            and (enforcement_view(system, grant_id) or {}).get("version") == 2
        )

    wait_for(markers_handled, 20, "the markers handled")
    decided = every_item(system, "enforcement", "/v1/decisions", grantee_id=grantee)
    assert sorted(d["access_event_id"] for d in decided) == sorted(
        [e["event_id"] for e in events] + [marker["event_id"]]
    )
    breaches = every_item(system, "enforcement", "/v1/breaches", grantee_id=grantee)
    assert sorted(b["access_event_id"] for b in breaches) == sorted(
        [*breaching, marker["event_id"]]
    )
    assert set(hook.accepted().values()) == {1}
    assert Counter(b["type"] for b in bodies(hook)) == {
        "grant.issued": 1,
        "condition.breached": len(breaching) + 1,
        "grant.suspended": 1,
    }
    subscription = contact_subscription(system, grant_id)["subscription_id"]
    listed = delivered(system, subscription, count=len(breaching) + 3)
    assert len(listed) == len(breaching) + 3
    assert (contacts_view(system, grant_id) or {}).get("version") == 2
    grant = system.call("grant", "GET", f"/v1/grants/{grant_id}", role="auditor").json()
    assert (grant["version"], grant["status"]) == (2, "suspended")


# --------------------------------------------------------------------------- 4. poison


def test_poison_on_every_consumed_topic_is_dead_lettered_once_and_nothing_stalls(
    system: System, demo_grant: dict[str, Any], hooks: Callable[[int], WebhookReceiver]
) -> None:
    """Bad JSON, an unknown type and invalid data between good events on access, grants
    and breaches: one dead letter per consumer with reason and position; the good ones
    are all processed."""
    hook = hooks(0)
    grantee = "org-fault-poison"
    grant_id = issue(system, demo_grant, grantee, hook, REVOKE_AFTER_3)

    def interleave(
        good: list[dict[str, Any]], unknown: dict[str, Any], invalid: dict[str, Any]
    ) -> tuple[list[bytes], list[str]]:
        poison = [b"{not json", to_bytes(unknown), to_bytes(invalid)]
        values = [
            v for pair in zip(poison, good, strict=True) for v in (pair[0], to_bytes(pair[1]))
        ]
        reasons = ["bad_json", "unknown_type", "invalid"]
        return values, reasons

    accesses = [access_event(grantee, T0 + timedelta(seconds=n)) for n in range(3)]
    bad_access = access_event(grantee, T0, units=-1)
    access_values, reasons = interleave(
        accesses, {**access_event(grantee, T0), "type": "access.teleported"}, bad_access
    )

    new_grants = []
    for n in range(3):
        event = golden("grant.issued")
        new_id = f"grt_fault_poison_{n}_{uuid.uuid4().hex[:8]}"
        event["event_id"] = str(uuid.uuid4())
        event["key"] = event["data"]["grant_id"] = new_id
        event["data"]["grantee"] = {
            **event["data"]["grantee"],
            "id": grantee + "-g",
            "contacts": [],
        }
        new_grants.append(event)
    template = new_grants[0]
    invalid_grant = {
        **template,
        "event_id": str(uuid.uuid4()),
        "data": {k: v for k, v in template["data"].items() if k != "model_id"},
    }
    grant_values, _ = interleave(
        new_grants,
        {**template, "event_id": str(uuid.uuid4()), "type": "grant.teleported"},
        invalid_grant,
    )

    breaches = []
    for n in range(3):
        event = golden("condition.breached")
        event["event_id"] = str(uuid.uuid4())
        event["key"] = grant_id
        event["data"].update(
            breach_id=f"brc_fault_{uuid.uuid4().hex[:16]}",
            grant_id=grant_id,
            grant_version=1,
            grantee_id=grantee,
            access_event_id=str(uuid.uuid4()),
            access_occurred_at=(T0 + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
        )
        breaches.append(event)
    breach = breaches[0]
    breach_values, _ = interleave(
        breaches,
        {**breach, "event_id": str(uuid.uuid4()), "type": "condition.exploded"},
        {**breach, "event_id": str(uuid.uuid4()), "data": {**breach["data"], "severity": "dire"}},
    )

    async def send_all() -> dict[str, list[tuple[int, int]]]:
        return {
            topics.ACCESS: await produce_at(
                system.bootstrap, topics.ACCESS, access_values, grantee
            ),
            topics.GRANTS: await produce_at(
                system.bootstrap, topics.GRANTS, grant_values, template["key"]
            ),
            topics.BREACHES: await produce_at(
                system.bootstrap, topics.BREACHES, breach_values, grant_id
            ),
        }

    positions = asyncio.run(send_all())

    # Every good message after the poison is processed, by every consumer of its topic.
    wait_for(
        lambda: total(system, "/v1/decisions", grantee_id=grantee) == 3, 10, "the good accesses"
    )
    new_ids = [event["data"]["grant_id"] for event in new_grants]
    wait_for(
        lambda: all(enforcement_view(system, gid) for gid in new_ids), 10, "grants in enforcement"
    )
    wait_for(
        lambda: all(contacts_view(system, gid) for gid in new_ids), 10, "grants in notification"
    )
    good_breach_ids = {b["data"]["breach_id"] for b in breaches}
    wait_for(lambda: set(accepted_breaches(hook)) == good_breach_ids, 20, "the good breaches told")
    wait_for(
        lambda: system.call("grant", "GET", f"/v1/grants/{grant_id}").json()["status"] == "revoked",
        10,
        "the breach policy applied to the three good breaches",
    )

    decided = every_item(system, "enforcement", "/v1/decisions", grantee_id=grantee)
    assert sorted(d["access_event_id"] for d in decided) == sorted(a["event_id"] for a in accesses)

    consumers = {
        topics.ACCESS: ["enforcement"],
        topics.GRANTS: ["enforcement", "notification"],
        topics.BREACHES: ["grant", "notification"],
    }
    values = {
        topics.ACCESS: access_values,
        topics.GRANTS: grant_values,
        topics.BREACHES: breach_values,
    }
    expected: Counter[tuple[str, str, int, int]] = Counter()
    why: dict[tuple[str, int, int], str] = {}
    original: dict[tuple[str, int, int], bytes] = {}
    for topic, where in positions.items():
        for index in (0, 2, 4):  # the poison, between the good ones
            partition, offset = where[index]
            why[(topic, partition, offset)] = reasons[index // 2]
            original[(topic, partition, offset)] = values[topic][index]
            for consumer in consumers[topic]:
                expected[(consumer, topic, partition, offset)] += 1

    letters = [
        e.data
        for _, e in events_on(system, topics.DEADLETTER)
        if (e.data.source_topic, e.data.source_partition, e.data.source_offset) in why
    ]
    found = Counter(
        (x.consumer, x.source_topic, x.source_partition, x.source_offset) for x in letters
    )
    assert found == expected
    for letter in letters:
        source = (letter.source_topic, letter.source_partition, letter.source_offset)
        assert letter.reason == why[source], (source, letter.reason, letter.error)
        assert codec.original_value(letter) == original[source]
        assert letter.error


# --------------------------------------------------------------------------- 5. store down


def test_sqlite_stores_locked_briefly_lose_and_duplicate_nothing(
    system: System, demo_grant: dict[str, Any], hooks: Callable[[int], WebhookReceiver]
) -> None:
    """Each SQLite store write-locked for 1.5s while events flow: processing waits, then
    resumes, and every effect is there exactly once."""
    hook = hooks(0)
    grantee = "org-fault-lock"
    grant_id = issue(system, demo_grant, grantee, hook, REVOKE_AFTER_3)
    first = [
        access_event(
            grantee, T0 + timedelta(seconds=n), **({"user_country": "CU"} if n % 10 == 0 else {})
        )
        for n in range(200)
    ]
    second = [
        access_event(
            grantee,
            T0 + timedelta(minutes=10, seconds=n),
            **({"user_country": "SY"} if n % 10 == 0 else {}),
        )
        for n in range(200)
    ]
    breaching = {e["event_id"] for e in first + second if e["data"]["user_country"] in ("CU", "SY")}

    # Enforcement's store locked while accesses arrive: nothing is judged until released.
    lock = Locked(system, "enforcement")
    try:
        asyncio.run(
            produce_at(system.bootstrap, topics.ACCESS, [to_bytes(e) for e in first], grantee)
        )
        time.sleep(1.5)  # the fault itself: the store stays unavailable this long
        assert total(system, "/v1/decisions", grantee_id=grantee) == 0
    finally:
        lock.release()
    wait_for(
        lambda: total(system, "/v1/decisions", grantee_id=grantee) == len(first),
        15,
        "the accesses judged once the store is back",
    )

    # The grant and notification stores locked while breaches arrive.
    wait_for(lambda: len(accepted_breaches(hook)) == 20, 20, "the first breaches told")
    lock = Locked(system, "grant", "notification")
    try:
        asyncio.run(
            produce_at(system.bootstrap, topics.ACCESS, [to_bytes(e) for e in second], grantee)
        )
        wait_for(
            lambda: total(system, "/v1/decisions", grantee_id=grantee) == len(first + second),
            15,
            "the second accesses judged",
        )
        time.sleep(1.5)  # the fault itself
        assert len(accepted_breaches(hook)) == 20  # nothing told while the store is locked
    finally:
        lock.release()

    wait_for(lambda: len(accepted_breaches(hook)) == len(breaching), 30, "every breach told once")
    assert total(system, "/v1/breaches", grantee_id=grantee) == len(breaching)
    recorded = every_item(system, "enforcement", "/v1/breaches", grantee_id=grantee)
    assert {b["access_event_id"] for b in recorded} == breaching
    wait_for(
        lambda: any(b["type"] == "carveout.revoked" for b in bodies(hook)), 10, "the revocation"
    )
    assert set(hook.accepted().values()) == {1}
    assert Counter(b["type"] for b in bodies(hook)) == {
        "grant.issued": 1,
        "condition.breached": len(breaching),
        "carveout.revoked": 1,
    }
    subscription = contact_subscription(system, grant_id)["subscription_id"]
    listed = delivered(system, subscription, count=len(breaching) + 2)
    assert len(listed) == len(breaching) + 2
    grant = system.call("grant", "GET", f"/v1/grants/{grant_id}", role="auditor").json()
    assert (grant["version"], grant["status"]) == (2, "revoked")
    for service in ("grant", "enforcement", "notification"):
        assert ready(system, service)


def stalled_seconds(system: System, service: str, topic: str) -> float:
    """``carveout_consumer_stalled_seconds{service,topic}`` as the service reports it."""
    text = system.call(service, "GET", "/metrics", role=None).text
    prefix = f'carveout_consumer_stalled_seconds{{service="{service}",topic="{topic}"}} '
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))


def test_a_store_locked_past_its_busy_timeout_stalls_the_consumer_visibly(
    system: System, demo_grant: dict[str, Any]
) -> None:
    """Locked longer than SQLite waits (5s): the access consumer waits without bound
    rather than setting the batch aside; /readyz answers 503 naming the store, without
    raw error text, and the stalled gauge counts; once released, all is judged once."""
    grantee = "org-fault-stalled"
    issue(system, demo_grant, grantee, None, NO_POLICY)
    events = [access_event(grantee, T0 + timedelta(seconds=n)) for n in range(20)]
    assert stalled_seconds(system, "enforcement", topics.ACCESS) == 0
    lock = Locked(system, "enforcement")
    try:
        asyncio.run(
            produce_at(system.bootstrap, topics.ACCESS, [to_bytes(e) for e in events], grantee)
        )

        def stalled_answer() -> dict[str, Any] | None:
            response = system.call("enforcement", "GET", "/readyz", role=None)
            access = response.json()["checks"]["access"]
            if response.status_code == 503 and access.startswith("stalled: store unavailable"):
                return dict(response.json())
            return None

        answer = wait_for(stalled_answer, 20, "enforcement not ready, stalled on its store")
        assert answer["status"] == "not ready"
        assert "locked" not in str(answer)  # the reason, not the exception's text
        assert stalled_seconds(system, "enforcement", topics.ACCESS) > 0
    finally:
        lock.release()
    wait_for(
        lambda: total(system, "/v1/decisions", grantee_id=grantee) == len(events),
        30,
        "the accesses judged once the store is back",
    )
    wait_for(lambda: ready(system, "enforcement"), 15, "enforcement ready again")
    assert stalled_seconds(system, "enforcement", topics.ACCESS) == 0
    letters = [
        e.data
        for _, e in events_on(system, topics.DEADLETTER)
        if e.type == "message.dead_lettered"
        and e.data.source_topic == topics.ACCESS
        and grantee.encode() in codec.head_value(e.data)
    ]
    assert letters == []  # waited for, never set aside


# --------------------------------------------------------------------------- 5b. PostgreSQL


@pytest.fixture(scope="module")
def pg_system(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str
) -> Iterator[tuple[System, list[str]]]:
    """A system whose three stores are fresh PostgreSQL databases."""
    import psycopg

    base = postgres_server.rsplit("/", 1)[0]
    names = {s: f"carveout_fault_{s}_{uuid.uuid4().hex[:8]}" for s in SERVICES}
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        for name in names.values():
            admin.execute(f'CREATE DATABASE "{name}"')
    running = System(
        tmp_path_factory.mktemp("var"),
        external_bootstrap=os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP"),
        extra_env={
            **FAST_RETRIES,
            **{f"CARVEOUT_{s.upper()}_DATABASE_URL": f"{base}/{n}" for s, n in names.items()},
        },
    )
    try:
        running.start()
        yield running, list(names.values())
    finally:
        running.stop()
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            for name in names.values():
                admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_postgresql_stores_down_briefly_lose_and_duplicate_nothing(
    pg_system: tuple[System, list[str]],
    postgres_server: str,
    hooks: Callable[[int], WebhookReceiver],
) -> None:
    """Every PostgreSQL store refuses connections (and loses its own) for 1.5s while
    accesses flow: each is judged, each breach recorded and queued for notice once."""
    import psycopg

    system, databases = pg_system
    hook = hooks(1)
    # Accesses of a grantee with no grant: each is a breach (no_active_grant) and, through
    # a regulator's subscription, a webhook.
    grantee = "org-fault-pg"
    subscribed = system.call(
        "notification",
        "POST",
        "/v1/subscriptions",
        json={
            "channel": "webhook",
            "address": hook.url,
            "event_types": ["condition.breached"],
            "grantee_id": grantee,
        },
    )
    assert subscribed.status_code == 201, subscribed.text
    subscription = subscribed.json()
    before = [access_event(grantee, T0 + timedelta(seconds=n)) for n in range(10)]
    during = [access_event(grantee, T0 + timedelta(minutes=5, seconds=n)) for n in range(100)]
    asyncio.run(produce_at(system.bootstrap, topics.ACCESS, [to_bytes(e) for e in before], grantee))
    wait_for(lambda: len(hook.accepted()) == len(before), 15, "the first breaches told")

    # Every service's database refuses connections and loses the ones it had, for a while.
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        for name in databases:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY(%s)",
            (databases,),
        )
        try:
            asyncio.run(
                produce_at(system.bootstrap, topics.ACCESS, [to_bytes(e) for e in during], grantee)
            )
            time.sleep(1.5)  # the fault itself: the stores stay unavailable this long
            assert total_or_none(system, grantee) in (None, len(before))
        finally:
            for name in databases:
                admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')

    everything = before + during
    wait_for(
        lambda: total(system, "/v1/decisions", grantee_id=grantee) == len(everything),
        30,
        "every access judged once the stores are back",
    )
    recorded = every_item(system, "enforcement", "/v1/breaches", grantee_id=grantee)
    assert sorted(b["access_event_id"] for b in recorded) == sorted(
        e["event_id"] for e in everything
    )

    def all_queued() -> list[dict[str, Any]] | None:
        listed = every_item(
            system,
            "notification",
            "/v1/notifications",
            subscription_id=subscription["subscription_id"],
        )
        return listed if len(listed) >= len(everything) else None

    listed = wait_for(all_queued, 30, "a notification queued for every breach", every=0.2)
    # exactly one notification per breach event, whatever was retried or redelivered
    assert sorted(n["event_id"] for n in listed) == sorted(b["event_id"] for b in recorded)
    # Those told before the outage were told once.
    assert set(hook.accepted().values()) == {1}
    told_before = {b["data"]["access_event_id"] for b in bodies(hook)}
    assert told_before >= {e["event_id"] for e in before}
    wait_for(lambda: all(ready(system, s) for s in SERVICES), 10, "every service ready")


@pytest.mark.postgres
def test_postgresql_notifications_queued_around_a_store_outage_are_delivered(
    pg_system: tuple[System, list[str]],
    postgres_server: str,
    hooks: Callable[[int], WebhookReceiver],
) -> None:
    """Notifications queued around a 1.5s outage of the notification store are delivered."""
    import psycopg

    system, databases = pg_system
    hook = hooks(1)
    grantee = "org-fault-pg-deliveries"
    subscribed = system.call(
        "notification",
        "POST",
        "/v1/subscriptions",
        json={
            "channel": "webhook",
            "address": hook.url,
            "event_types": ["condition.breached"],
            "grantee_id": grantee,
        },
    )
    assert subscribed.status_code == 201, subscribed.text
    events = [access_event(grantee, T0 + timedelta(seconds=n)) for n in range(10)]
    notification_db = [d for d in databases if "_notification_" in d]
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{notification_db[0]}" WITH ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY(%s)",
            (notification_db,),
        )
        try:
            asyncio.run(
                produce_at(system.bootstrap, topics.ACCESS, [to_bytes(e) for e in events], grantee)
            )
            time.sleep(1.5)  # the fault itself: the store stays unavailable this long
        finally:
            admin.execute(f'ALTER DATABASE "{notification_db[0]}" WITH ALLOW_CONNECTIONS true')
    wait_for(lambda: len(hook.accepted()) == len(events), 8, "every breach told after the outage")
    assert set(hook.accepted().values()) == {1}


def total_or_none(system: System, grantee: str) -> int | None:
    """Decisions recorded so far, or ``None`` while the store cannot answer."""
    response = system.call(
        "enforcement", "GET", "/v1/decisions", role="auditor", params={"grantee_id": grantee}
    )
    return int(response.json()["total"]) if response.status_code == 200 else None


@pytest.mark.postgres
def test_postgresql_enforcement_judges_accesses_a_grant_covers(
    pg_system: tuple[System, list[str]], demo_grant: dict[str, Any]
) -> None:
    """Enforcement on PostgreSQL records the accesses a grant covers."""
    system, _ = pg_system
    grantee = "org-fault-pg-covered"
    issue(system, demo_grant, grantee, None, NO_POLICY)
    events = [access_event(grantee, T0 + timedelta(seconds=n)) for n in range(5)]
    asyncio.run(produce_at(system.bootstrap, topics.ACCESS, [to_bytes(e) for e in events], grantee))
    wait_for(
        lambda: total(system, "/v1/decisions", grantee_id=grantee) == len(events),
        5,
        "the accesses judged",
    )
