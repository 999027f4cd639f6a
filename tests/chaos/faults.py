"""The faults, each injected and healed in turn, and the schedule that orders them.

A fault is done when it is healed (a stopped process continued, a killed broker back and
noticed); a killed replica is left to ``carveout up`` to start again. Nothing here waits
by sleeping for something to happen: each wait is on a condition with a deadline. The
only sleeps are the faults themselves (how long a process stays stopped) and the pacing
between faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from carveout_contracts import topics

from ..kafka import signature
from ..system import wait_for
from .cluster import Cluster, Replica, read_raw
from .load import POLICY, Load

KINDS = (
    "sigkill replica",
    "sigstop replica",
    "broker restart",
    "pg_terminate_backend",
    "duplicate records",
    "poison records",
)
WEIGHTS = (24, 24, 7, 15, 15, 15)


def schedule(rng: random.Random, count: int) -> list[str]:
    """``count`` faults: every kind once first (in a random order), then drawn by weight;
    no two broker restarts in a row."""
    kinds = list(KINDS)
    rng.shuffle(kinds)
    plan = kinds[:count]
    while len(plan) < count:
        kind = rng.choices(KINDS, WEIGHTS)[0]
        if kind == "broker restart" and plan[-1] == kind:
            continue
        plan.append(kind)
    return plan


Record = tuple[str, bytes, list[tuple[str, bytes]]]
"""A record to produce: key, value, headers."""


@dataclass
class Baseline:
    """Copies of the stores taken after the last broker restart: the log before it is
    gone, so a replay starts from them (``carveout replay --since``) rather than empty."""

    since: datetime
    copies: dict[str, str]


@dataclass
class Injector:
    cluster: Cluster
    load: Load
    rng: random.Random
    log: Callable[[str], None]
    injected: Counter[str] = field(default_factory=Counter)
    detail: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    """Accesses the enforcement replicas reported lost with the broker's log."""
    forged_grants: list[str] = field(default_factory=list)
    forged_breaches: list[str] = field(default_factory=list)
    poison_sent: Counter[str] = field(default_factory=Counter)
    baseline: Baseline | None = None

    def inject(self, kind: str) -> None:
        action = {
            "sigkill replica": self.sigkill,
            "sigstop replica": self.sigstop,
            "broker restart": self.broker_restart,
            "pg_terminate_backend": self.pg_terminate,
            "duplicate records": self.duplicates,
            "poison records": self.poison,
        }[kind]
        action()
        self.injected[kind] += 1

    # ------------------------------------------------------------------ processes

    def _replica(self) -> Replica:
        return self.rng.choice(self.cluster.every_replica)

    def sigkill(self) -> None:
        replica = self._replica()
        try:
            pid = self.cluster.pid(replica)
        except (OSError, ValueError):
            pid = 0
        if pid:
            # Already dead and being restarted: still the fault it meant.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.detail[f"sigkill {replica.service}"] += 1
        self.log(f"SIGKILL {replica.label} (pid {pid})")

    def sigstop(self) -> None:
        replica = self._replica()
        hold = self.rng.uniform(0.3, 4.5)
        try:
            pid = self.cluster.pid(replica)
            os.kill(pid, signal.SIGSTOP)
        except (OSError, ValueError):
            return self.sigkill()
        self.log(f"SIGSTOP {replica.label} (pid {pid}) for {hold:.1f}s")
        try:
            time.sleep(hold)  # the fault itself: the process stays stopped this long
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.detail[f"sigstop {replica.service}"] += 1
        return None

    # ------------------------------------------------------------------ broker

    def _lost_now(self) -> dict[int, int]:
        """records_lost of carveout.access by enforcement replica (index)."""
        found = {}
        for index in range(self.cluster.replicas):
            body = self.cluster.readyz(Replica("enforcement", index))
            found[index] = int(body.get("records_lost", {}).get(topics.ACCESS, 0))
        return found

    def _access_ends_seen(self, index: int) -> dict[int, float]:
        return {
            int(labels["partition"]): value
            for labels, value in self.cluster.metrics(
                Replica("enforcement", index), "carveout_log_end_offset"
            )
            if labels.get("topic") == topics.ACCESS
        }

    def _restarts_seen(self, index: int) -> float:
        found = self.cluster.metrics(
            Replica("enforcement", index), "carveout_broker_restarts_total"
        )
        return sum(value for _, value in found)

    def broker_restart(self) -> None:
        cluster = self.cluster
        # Traffic is held first: the lost accesses are counted at a quiet point, and under
        # traffic "every replica caught up at the same instant" need never happen.
        self.load.gate.close()
        try:
            cluster.wait_all_ready(120, "every replica ready before the broker restart")
            ends = cluster.log_ends(topics.ACCESS)
            # Every access on the log is seen by each enforcement replica before the
            # broker dies, so whatever of it was not judged is counted as lost.
            for index in range(cluster.replicas):
                wait_for(
                    lambda i=index: all(  # type: ignore[misc]
                        self._access_ends_seen(i).get(p, 0) >= end for p, end in ends.items()
                    ),
                    30,
                    f"enforcement-{index} has seen the ends of {topics.ACCESS}",
                    every=0.1,
                )
            before = self._lost_now()
            restarts = [self._restarts_seen(i) for i in range(cluster.replicas)]
            pids = cluster.broker_pids()
            assert pids, "the embedded broker's process"
            since = datetime.now(UTC)
            self.load.accepted.forget_raw()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            self.log(f"SIGKILL the embedded broker (pid {', '.join(map(str, pids))})")
            wait_for(
                lambda: (found := cluster.broker_pids()) and set(found).isdisjoint(pids),
                30,
                "the broker started again",
                every=0.1,
            )
            for index in range(cluster.replicas):
                wait_for(
                    lambda i=index: self._restarts_seen(i) > restarts[i],  # type: ignore[misc]
                    60,
                    f"enforcement-{index} noticing the broker restarted",
                    every=0.1,
                )
            after = self._lost_now()
        finally:
            self.load.gate.open()
        lost = sum(after[i] - before[i] for i in after)
        self.lost += lost
        self.log(f"the broker is back; {lost} accesses reported lost")
        cluster.wait_each_ready(120, "every replica ready after the broker restart")
        self._take_baseline(since)

    def _take_baseline(self, since: datetime) -> None:
        if self.baseline is not None:
            for name in self.baseline.copies.values():
                self.cluster.databases.drop(name)
        copies = {
            s: self.cluster.databases.copy(s, f"{s}_base") for s in self.cluster.databases.names
        }
        self.baseline = Baseline(since, copies)

    # ------------------------------------------------------------------ PostgreSQL

    def pg_terminate(self) -> None:
        services = list(self.cluster.databases.names)
        chosen = services if self.rng.random() < 0.3 else [self.rng.choice(services)]
        killed = self.cluster.databases.terminate(chosen)
        self.detail[
            f"pg connections terminated ({'+'.join(chosen) if len(chosen) == 1 else 'all'})"
        ] += 1
        self.log(f"pg_terminate_backend on {', '.join(chosen)}: {killed} connections")

    # ------------------------------------------------------------------ records

    def _produce(
        self, topic: str, records: list[tuple[str, bytes, list[tuple[str, bytes]]]]
    ) -> None:
        async def send() -> None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.cluster.system.bootstrap, enable_idempotence=False
            )
            await producer.start()
            try:
                for key, value, headers in records:
                    await producer.send_and_wait(topic, value, key=key.encode(), headers=headers)
            finally:
                await producer.stop()

        asyncio.run(send())

    def duplicates(self) -> None:
        which = self.rng.choice([topics.ACCESS, topics.GRANTS, topics.BREACHES])
        picked: list[Record] = []
        if which != topics.ACCESS:
            records = asyncio.run(read_raw(self.cluster.system.bootstrap, which))
            chosen = self.rng.sample(records, min(10, len(records)))
            picked = [(r.key.decode(), r.value, list(r.headers)) for r in chosen]
        if not picked:
            which = topics.ACCESS
            picked = [(k, v, []) for k, v in self.load.accepted.sample(self.rng, 25)]
        self._produce(which, picked)
        self.detail[f"duplicates on {which}"] += len(picked)
        self.log(f"{len(picked)} records of {which} sent again")

    def poison(self) -> None:
        bootstrap = self.cluster.system.bootstrap
        kind = self.rng.choice(["bad json", "unsigned grant", "unsigned breach", "invalid access"])
        if kind == "bad json":
            topic = self.rng.choice([topics.ACCESS, topics.GRANTS, topics.BREACHES])
            value = b'{"event_id": "' + uuid.uuid4().hex.encode() + b'", not json'
            headers = signature(bootstrap, topic, value)  # signed, and still unreadable
            self._produce(topic, [("chaos-poison", value, headers)])
        elif kind == "unsigned grant":
            topic = topics.GRANTS
            grant_id = f"grt_forged_{uuid.uuid4().hex[:12]}"
            self.forged_grants.append(grant_id)
            self._produce(topic, [(grant_id, json.dumps(forged_grant(grant_id)).encode(), [])])
        elif kind == "unsigned breach":
            topic = topics.BREACHES
            grant_id = self.load.grants[self.rng.choice(POLICY)]
            breach_id = f"brc_forged_{uuid.uuid4().hex[:16]}"
            self.forged_breaches.append(breach_id)
            value = json.dumps(forged_breach(breach_id, grant_id)).encode()
            self._produce(topic, [(grant_id, value, [])])
        else:
            topic = topics.ACCESS
            event = forged_grant("x")
            event.update(type="access.recorded", data={"grantee_id": "org-chaos-r0", "units": -1})
            self._produce(topic, [("org-chaos-r0", json.dumps(event).encode(), [])])
        self.poison_sent[kind] += 1
        self.detail[f"poison: {kind}"] += 1
        self.log(f"poison ({kind}) on {topic}")


def forged_grant(grant_id: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "event_id": str(uuid.uuid4()),
        "type": "grant.issued",
        "version": 1,
        "occurred_at": now,
        "producer": "grant",
        "key": grant_id,
        "data": {
            "grant_id": grant_id,
            "carveout_id": "co-forged",
            "version": 1,
            "grantee": {"id": "org-chaos-forged", "name": "forged", "contacts": []},
            "model_id": "mythos-preview",
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": "2030-01-01T00:00:00Z",
            "conditions": [],
            "breach_policy": {
                "suspend_after_critical": None,
                "revoke_after_critical": None,
                "window_seconds": 3600,
            },
            "issued_by": "forger",
        },
    }


def forged_breach(breach_id: str, grant_id: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "event_id": str(uuid.uuid4()),
        "type": "condition.breached",
        "version": 1,
        "occurred_at": now,
        "producer": "enforcement",
        "key": grant_id,
        "data": {
            "breach_id": breach_id,
            "grant_id": grant_id,
            "grant_version": 1,
            "grantee_id": "org-chaos-p0",
            "model_id": "mythos-preview",
            "access_event_id": str(uuid.uuid4()),
            "access_occurred_at": now,
            "request_id": "req_forged",
            "severity": "critical",
            "violations": [
                {
                    "condition_id": "embargo",
                    "kind": "user_countries",
                    "severity": "critical",
                    "expected": {"deny": ["KP"]},
                    "actual": "KP",
                }
            ],
        },
    }
