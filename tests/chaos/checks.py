"""After the faults: let the system settle, then check every effect against what was sent.

Each check is a row (what, expected, found): the run fails on any row whose two differ.
The stores are read directly (the three PostgreSQL databases), the listings through both
enforcement replicas, the deliveries at the webhook receiver, and each store's digest is
compared with its replay from the log.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from carveout_contracts import topics

from ..receivers import WebhookReceiver
from ..system import wait_for
from .cluster import Cluster, Replica, log_ends
from .faults import Injector
from .load import REVOKE_AFTER, Load


@dataclass(frozen=True)
class Check:
    what: str
    expected: Any
    found: Any

    @property
    def ok(self) -> bool:
        return bool(self.expected == self.found)


def groups(cluster: Cluster) -> dict[str, list[str]]:
    """Every consumer group of the running services and the topics it reads."""
    host = socket.gethostname()
    found = {
        "carveout-grant": [topics.BREACHES, topics.ACKS],
        "carveout-enforcement-access": [topics.ACCESS],
        "carveout-notification": [topics.GRANTS, topics.BREACHES],
    }
    for index in range(cluster.replicas):
        port = cluster.system.ports["enforcement"] + 10 * index
        found[f"carveout-enforcement.grants.{host}:{port}"] = [topics.GRANTS]
    return found


async def _behind(bootstrap: str, targets: dict[str, dict[tuple[str, int], int]]) -> int:
    from aiokafka import TopicPartition

    behind = 0
    for group, ends in targets.items():
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            for (topic, partition), end in ends.items():
                committed = await consumer.committed(TopicPartition(topic, partition)) or 0
                behind += max(0, end - committed)
        finally:
            await consumer.stop()
    return behind


def caught_up(cluster: Cluster, within: float) -> None:
    """Every group has committed at least the ends its topics had when this was called."""
    bootstrap = cluster.system.bootstrap
    targets: dict[str, dict[tuple[str, int], int]] = {}
    for group, names in groups(cluster).items():
        targets[group] = {
            (topic, p): end
            for topic in names
            for p, end in asyncio.run(log_ends(bootstrap, topic)).items()
        }
    wait_for(
        lambda: asyncio.run(_behind(bootstrap, targets)) == 0,
        within,
        "every consumer group caught up with the log",
        every=0.5,
    )


def unfinished(db: Any) -> dict[str, int]:
    """What is still to be published or delivered, by what it is."""
    return {
        "breaches unpublished": db.rows(
            "enforcement", "SELECT count(*) FROM breaches WHERE published_at IS NULL"
        )[0][0],
        "grant events unpublished": db.rows(
            "grant", "SELECT count(*) FROM grant_events WHERE published_at IS NULL"
        )[0][0],
        "notifications pending": db.rows(
            "notification", "SELECT count(*) FROM notifications WHERE status = 'pending'"
        )[0][0],
        "outcomes unannounced": db.rows(
            "notification",
            "SELECT count(*) FROM notifications WHERE status <> 'pending' AND announced_at IS NULL",
        )[0][0],
    }


def settle(
    cluster: Cluster, load: Load, injector: Injector, hook: WebhookReceiver, within: float
) -> None:
    """Wait until every replica is ready, the counts add up (or stop changing: then the
    checks say what is wrong), every outbox is published and every consumer caught up."""
    cluster.wait_all_ready(within, "every replica ready")
    db = cluster.databases
    expected = len(load.accepted.ids) - injector.lost
    last: list[Any] = [None, 0]

    def counted() -> bool:
        state = (
            db.rows("enforcement", "SELECT count(*) FROM decisions")[0][0],
            db.rows("enforcement", "SELECT count(*) FROM breaches")[0][0],
            db.rows("grant", "SELECT count(*) FROM policy_breaches")[0][0],
            db.rows("notification", "SELECT count(*) FROM notifications")[0][0],
            sum(hook.accepted().values()),
        )
        quiet = not any(unfinished(db).values())
        if state[0] == expected and quiet:
            return True
        if state != last[0]:
            last[0], last[1] = state, 0
            return False
        last[1] += 1
        return bool(last[1] >= 40 and quiet)  # nothing changed in 20 s: the checks will say why

    try:
        wait_for(counted, within, "the counts settled", every=0.5)
    except AssertionError:
        raise AssertionError(
            f"the counts settled: not within {within}s; (decisions, breaches, policy breaches, "
            f"notifications, webhooks accepted) last {last[0]}, decisions expected {expected}; "
            f"unpublished or undelivered: {unfinished(db)}"
        ) from None
    caught_up(cluster, within)


def effects(
    cluster: Cluster, load: Load, injector: Injector, hook: WebhookReceiver, subscription: str
) -> list[Check]:
    db = cluster.databases
    checks: list[Check] = []
    accepted = load.accepted.ids
    decisions = db.rows(
        "enforcement",
        "SELECT access_event_id, grant_id, violations, units FROM decisions",
    )
    decided = {row[0] for row in decisions}
    checks.append(
        Check(
            f"accesses judged once ({len(accepted)} accepted - {injector.lost} lost)",
            len(accepted) - injector.lost,
            len(decided & accepted),
        )
    )
    checks.append(Check("decisions of accesses never accepted", 0, len(decided - accepted)))
    never = sorted(accepted - decided, key=lambda i: load.accepted.when[i][1])
    if len(never) > injector.lost:  # more than were lost with the broker: say which
        checks.append(
            Check(
                "accesses accepted and never judged (first five)",
                [],
                [_accepted(i, *load.accepted.when[i]) for i in never[:5]],
            )
        )
    for index in range(cluster.replicas):
        page = cluster.call(
            "enforcement", index, "GET", "/v1/decisions", role="auditor", params={"limit": 1}
        )
        checks.append(
            Check(f"decisions listed by enforcement-{index}", len(decided), page.json()["total"])
        )

    violating = {row[0] for row in decisions if json.loads(row[2])}
    breaches = db.rows(
        "enforcement",
        "SELECT breach_id, access_event_id, grant_id, severity, payload FROM breaches",
    )
    breach_accesses = Counter(row[1] for row in breaches)
    checks.append(
        Check(
            "breaches: one per access with violations",
            len(violating),
            len(set(breach_accesses) & violating) if set(breach_accesses) <= violating else -1,
        )
    )
    checks.append(
        Check("accesses with two breaches", 0, sum(1 for n in breach_accesses.values() if n > 1))
    )

    # Usage caps: units counted where a grant was in force; a cap breach for each over it.
    counted_units: Counter[str] = Counter()
    cap_breaches = 0
    for _id, grant_id, violations, units in decisions:
        kinds = {v["kind"] for v in json.loads(violations)}
        if grant_id is not None and "no_active_grant" not in kinds:
            counted_units[grant_id] += units
        cap_breaches += "usage_cap" in kinds
    usage = db.rows("enforcement", 'SELECT grant_id, "window", units FROM usage')
    used: Counter[str] = Counter()
    over_cap = 0
    for grant_id, window, units in usage:
        if window == "hour":
            used[grant_id] += units
            over_cap += max(0, units - load.cap)
    checks.append(
        Check(
            "usage units = units judged under a grant in force",
            sum(counted_units.values()),
            sum(used.values()) if used == counted_units else -1,
        )
    )
    checks.append(Check("usage cap breaches = units over each cap", over_cap, cap_breaches))

    # Breach policy: every critical breach of a grant counted once; revocations as due.
    critical = {row[0]: row[2] for row in breaches if row[2] is not None and row[3] == "critical"}
    policy = dict(db.rows("grant", "SELECT breach_id, grant_id FROM policy_breaches"))
    checks.append(
        Check(
            "critical breaches counted by the breach policy",
            len(critical),
            len(policy) if policy == critical else -1,
        )
    )
    per_grant = Counter(critical.values())
    due = {g for g in load.policy_grants if per_grant[g] >= REVOKE_AFTER}
    tripped: Counter[str] = Counter()
    for (payload,) in db.rows("grant", "SELECT payload FROM grant_events"):
        event = json.loads(payload)
        if event["data"].get("cause") == "breach_policy":
            for grant_id in event["data"].get("grant_ids") or [event["data"].get("grant_id")]:
                tripped[grant_id] += 1
    checks.append(
        Check(
            f"policy grants revoked after {REVOKE_AFTER} critical breaches",
            len(due),
            len(tripped) if set(tripped) == due else f"{len(tripped)}: other grants",
        )
    )
    checks.append(
        Check("breach policy actions taken twice", 0, sum(1 for n in tripped.values() if n > 1))
    )

    # Every grant at the same version everywhere.
    versions = {g: v for g, v in db.rows("grant", "SELECT grant_id, version FROM grants")}
    seen = {
        g: (v, s)
        for g, v, s in db.rows("enforcement", "SELECT grant_id, version, status FROM grant_views")
    }
    told = {
        g: (v, s)
        for g, v, s in db.rows(
            "notification", "SELECT grant_id, version, status FROM grant_contacts"
        )
    }
    agree = sum(
        1
        for g, v in versions.items()
        if g in seen and g in told and seen[g][0] == v == told[g][0] and seen[g][1] == told[g][1]
    )
    checks.append(Check("grants at one version in all three stores", len(load.all_grants), agree))

    # Poison and forgeries changed nothing.
    forged = set(injector.forged_grants)
    checks.append(
        Check("forged grants applied", 0, len(forged & (set(seen) | set(told) | set(versions))))
    )
    notified = db.rows(
        "notification",
        "SELECT notification_id, subscription_id, event_id, event_type, status, payload "
        "FROM notifications",
    )
    forged_breaches = set(injector.forged_breaches)
    told_breaches = {
        json.loads(row[5])["data"].get("breach_id")
        for row in notified
        if row[3] == "condition.breached"
    }
    checks.append(
        Check(
            "forged breaches counted or told",
            0,
            len(forged_breaches & (set(policy) | told_breaches | {row[0] for row in breaches})),
        )
    )

    # Notifications: one per (event, subscription), every breach told, each accepted once.
    pairs = Counter((row[1], row[2]) for row in notified)
    checks.append(Check("notifications per (event, subscription)", len(pairs), len(notified)))
    breach_events = {json.loads(row[4])["event_id"] for row in breaches}
    to_all = {row[2] for row in notified if row[1] == subscription}
    checks.append(
        Check(
            "breaches told to the all-breaches subscription",
            len(breach_events),
            len(to_all & breach_events) if to_all <= breach_events else -1,
        )
    )
    delivered = {row[0] for row in notified if row[4] == "delivered"}
    checks.append(Check("notifications delivered", len(notified), len(delivered)))
    at_hook = hook.accepted()
    checks.append(
        Check(
            "webhooks accepted once per notification",
            len(delivered),
            sum(1 for n in delivered if at_hook.get(n) == 1),
        )
    )
    checks.append(
        Check(
            "webhooks accepted twice, or never notified",
            0,
            sum(1 for n, c in at_hook.items() if c > 1 or n not in delivered),
        )
    )
    return checks


def digests(cluster: Cluster, injector: Injector) -> list[Check]:
    """Each live store's digest and its replay's, from the log (or, after a broker
    restart, from a copy taken after it and the log since)."""
    found = []
    for service in ("grant", "enforcement", "notification"):
        live = cluster.carveout("digest", service, "--json")
        if live.returncode != 0:
            found.append(Check(f"{service} digest", "digest", live.stderr[-300:]))
            continue
        args = ["replay", service, "--json"]
        baseline = injector.baseline
        if baseline is not None:
            target = baseline.copies[service]
            args += ["--since", baseline.since.isoformat().replace("+00:00", "Z")]
            how = "replay since the last broker restart"
        else:
            target = cluster.databases.fresh(f"{service}_replay")
            how = "replay"
        args += ["--database-url", cluster.databases.url(target)]
        rebuilt = cluster.carveout(*args)
        expected = json.loads(live.stdout)["digest"][:16]
        if rebuilt.returncode != 0:
            found.append(Check(f"{service} digest = {how}", expected, rebuilt.stderr[-300:]))
            continue
        report = json.loads(rebuilt.stdout)
        check = Check(f"{service} digest = {how}", expected, report["digest"][:16])
        if not check.ok:
            tables = json.loads(live.stdout)["tables"]
            differing = [t for t, v in tables.items() if report["tables"].get(t) != v]
            check = Check(
                f"{service} digest = {how} (differs: {', '.join(differing)})",
                expected,
                report["digest"][:16],
            )
        found.append(check)
    return found


def lost_reported(cluster: Cluster) -> int:
    return sum(
        int(cluster.readyz(Replica("enforcement", i)).get("records_lost", {}).get(topics.ACCESS, 0))
        for i in range(cluster.replicas)
    )


def by_grant(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    found: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        found[row[0]].append(row)
    return found


def _accepted(event_id: str, gateway: str, at: float) -> str:
    return f"{event_id} via {gateway} at {datetime.fromtimestamp(at, UTC):%H:%M:%S.%f}"
