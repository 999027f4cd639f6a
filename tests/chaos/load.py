"""What the system carries while faults are injected: gateways and a regulator.

Two gateways record accesses: one produces them to ``carveout.access`` itself, one posts
them to ``POST /v1/access`` of either enforcement replica. An access is *accepted* once
the broker (or the API, with 202) has taken it; a send that fails is sent again with the
same event id until it is, so nothing is accepted twice or left in doubt. Some accesses
breach (an embargoed country, a missing safeguard, a purpose not allowed, no grant at
all) and every grant has a small usage cap. The regulator issues, suspends, reinstates
and revokes grants (and whole carveouts) through either grant replica; the grants of the
policy grantees are left to their breach policy, and issued again once it revokes them.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from carveout_contracts import topics

from ..kafka import access_event
from .cluster import Cluster

REGULATED = [f"org-chaos-r{n}" for n in range(4)]
POLICY = [f"org-chaos-p{n}" for n in range(2)]
UNKNOWN = "org-chaos-nogrant"
REVOKE_AFTER = 5
POLICY_WINDOW_S = 3600
CLEAN = {
    "user_country": "US",
    "deployment_region": "us-east",
    "purpose": "vulnerability-scanning",
    "safeguards": ["access_logging", "mfa"],
}
BREACHING: list[dict[str, Any]] = [
    {"user_country": "KP"},
    {"safeguards": ["access_logging"]},
    {"purpose": "marketing"},
]


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def grant_body(grantee: str, hook_url: str, cap: int, policy: bool, serial: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "carveout_id": f"co-chaos-{grantee}-{serial}",
        "model_id": "mythos-preview",
        "grantee": {
            "id": grantee,
            "name": grantee,
            "contacts": [{"kind": "webhook", "address": hook_url}],
        },
        "valid_from": stamp(now - timedelta(hours=1)),
        "valid_until": stamp(now + timedelta(days=30)),
        "conditions": [
            {
                "id": "countries",
                "kind": "user_countries",
                "allow": ["US", "GB", "IN"],
                "severity": "critical",
            },
            {
                "id": "embargo",
                "kind": "user_countries",
                "deny": ["KP", "IR", "CU"],
                "severity": "critical",
            },
            {
                "id": "regions",
                "kind": "deployment_regions",
                "allow": ["us-east", "us-west"],
                "severity": "critical",
            },
            {
                "id": "purpose",
                "kind": "purposes",
                "allow": ["vulnerability-scanning"],
                "severity": "warning",
            },
            {
                "id": "safeguards",
                "kind": "safeguards",
                "require": ["access_logging", "mfa"],
                "severity": "critical",
            },
            {
                "id": "cap",
                "kind": "usage_cap",
                "units": cap,
                "window": "hour",
                "severity": "warning",
            },
        ],
        "breach_policy": {
            "suspend_after_critical": None,
            "revoke_after_critical": REVOKE_AFTER if policy else None,
            "window_seconds": POLICY_WINDOW_S,
        },
    }


@dataclass
class Accepted:
    """The accesses the gateways had accepted, by event id, and their raw values."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: set[str] = field(default_factory=set)
    raw: list[tuple[str, bytes]] = field(default_factory=list)
    """(key, value) of the accesses produced to Kafka: what duplicates re-send."""
    by_gateway: Counter[str] = field(default_factory=Counter)
    when: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Each accepted access's gateway and when it was accepted (epoch seconds)."""

    def add(self, gateway: str, ids: list[str], raw: list[tuple[str, bytes]] | None = None) -> None:
        with self.lock:
            self.ids.update(ids)
            at = time.time()
            self.when.update((i, (gateway, at)) for i in ids)
            self.raw.extend(raw or [])
            self.by_gateway[gateway] += len(ids)

    def forget_raw(self) -> None:
        """The broker restarted: what was on its log before may have been lost unjudged,
        and must not be sent again (duplicates come from the log as it is now)."""
        with self.lock:
            self.raw.clear()

    def sample(self, rng: random.Random, count: int) -> list[tuple[str, bytes]]:
        with self.lock:
            return rng.sample(self.raw, min(count, len(self.raw)))


class Gate:
    """Traffic pauses at it (around a broker restart) and says when it has."""

    def __init__(self, workers: int) -> None:
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._idle = 0
        self._workers = workers
        self._all_idle = threading.Event()

    def close(self, within: float = 30) -> None:
        self._open.clear()
        if not self._all_idle.wait(within):
            raise AssertionError(f"traffic did not pause within {within}s")

    def open(self) -> None:
        self._all_idle.clear()
        self._open.set()

    def pass_(self, stopping: threading.Event) -> bool:
        """Wait while closed; False once ``stopping`` is set."""
        if self._open.is_set():
            return not stopping.is_set()
        with self._lock:
            self._idle += 1
            if self._idle == self._workers:
                self._all_idle.set()
        while not self._open.wait(0.05):
            if stopping.is_set():
                break
        with self._lock:
            self._idle -= 1
        return not stopping.is_set()

    def retire(self) -> None:
        """A worker that has stopped counts as idle for good."""
        with self._lock:
            self._idle += 1
            if self._idle >= self._workers:
                self._all_idle.set()


@dataclass
class Load:
    cluster: Cluster
    hook_url: str
    seed: int
    rate_per_s: float = 40.0
    cap: int = 150
    accepted: Accepted = field(default_factory=Accepted)
    actions: Counter[str] = field(default_factory=Counter)
    grants: dict[str, str] = field(default_factory=dict)
    """The current grant of each grantee."""
    policy_grants: list[str] = field(default_factory=list)
    all_grants: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    stopping: threading.Event = field(default_factory=threading.Event)
    gate: Gate = field(default_factory=lambda: Gate(2))
    _threads: list[threading.Thread] = field(default_factory=list)
    _serial: int = 0

    # ------------------------------------------------------------------ grants

    def issue(self, grantee: str, rng: random.Random) -> str:
        self._serial += 1
        body = grant_body(grantee, self.hook_url, self.cap, grantee in POLICY, self._serial)
        response = self._regulator(rng, "POST", "/v1/grants", body, ok=(201,))
        if response is None:
            raise AssertionError(f"could not issue a grant to {grantee}")
        grant_id: str = response.json()["grant_id"]
        self.grants[grantee] = grant_id
        self.all_grants.append(grant_id)
        if grantee in POLICY:
            self.policy_grants.append(grant_id)
        self.actions["issue"] += 1
        return grant_id

    def _regulator(
        self,
        rng: random.Random,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        ok: tuple[int, ...] = (200,),
        within: float = 60,
    ) -> httpx.Response | None:
        """Through either grant replica, the other when one does not answer; ``None`` when
        the action was refused (a conflict: the grant moved on meanwhile)."""
        deadline = time.monotonic() + within
        index = rng.randrange(self.cluster.replicas)
        while time.monotonic() < deadline:
            try:
                response = self.cluster.call("grant", index, method, path, json=body)
            except httpx.HTTPError as exc:
                self.errors[f"regulator {type(exc).__name__}"] += 1
            else:
                if response.status_code in ok:
                    return response
                if response.status_code < 500:
                    self.errors[f"regulator {response.status_code}"] += 1
                    return None
                self.errors[f"regulator {response.status_code}"] += 1
            index = (index + 1) % self.cluster.replicas
            time.sleep(0.2)
        raise AssertionError(f"{method} {path}: no grant replica answered within {within}s")

    def status(self, grant_id: str, rng: random.Random) -> str:
        response = self._regulator(rng, "GET", f"/v1/grants/{grant_id}", None)
        return "unknown" if response is None else str(response.json()["status"])

    def regulate_once(self, rng: random.Random) -> None:
        for grantee in POLICY:  # a grant its policy revoked: issued again
            if self.status(self.grants[grantee], rng) == "revoked":
                self.issue(grantee, rng)
        grantee = rng.choice(REGULATED)
        grant_id = self.grants[grantee]
        status = self.status(grant_id, rng)
        reason = {"reason": "chaos regulator"}
        if status == "revoked":
            self.issue(grantee, rng)
        elif status == "active":
            roll = rng.random()
            if roll < 0.6:
                done = self._regulator(rng, "POST", f"/v1/grants/{grant_id}/suspend", reason)
                self.actions["suspend"] += done is not None
            elif roll < 0.8:
                done = self._regulator(rng, "POST", f"/v1/grants/{grant_id}/revoke", reason)
                self.actions["revoke"] += done is not None
            else:
                carveout = f"/v1/carveouts/co-chaos-{grantee}-"
                found = self._regulator(rng, "GET", f"/v1/grants/{grant_id}", None)
                if found is not None:
                    carveout = f"/v1/carveouts/{found.json()['carveout_id']}/revoke"
                    done = self._regulator(rng, "POST", carveout, reason)
                    self.actions["revoke carveout"] += done is not None
        elif status == "suspended":
            done = self._regulator(rng, "POST", f"/v1/grants/{grant_id}/reinstate", reason)
            self.actions["reinstate"] += done is not None

    # ------------------------------------------------------------------ accesses

    def _access(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        roll = rng.random()
        if roll < 0.04:
            grantee = UNKNOWN
        elif roll < 0.3:
            grantee = rng.choice(POLICY)
        else:
            grantee = rng.choice(REGULATED)
        data: dict[str, Any] = {**CLEAN, "units": 1, "gateway_id": "gw-chaos"}
        if rng.random() < 0.12:
            data.update(rng.choice(BREACHING))
        return grantee, data

    def _kafka_gateway(self, rng: random.Random) -> None:
        asyncio.run(self._produce_forever(rng))

    async def _produce_forever(self, rng: random.Random) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.cluster.system.bootstrap,
            enable_idempotence=False,
            linger_ms=2,
            request_timeout_ms=5000,
            metadata_max_age_ms=3000,
        )
        await producer.start()
        try:
            while self.gate.pass_(self.stopping):
                batch = []
                for _ in range(rng.randint(1, 8)):
                    grantee, data = self._access(rng)
                    event = access_event(grantee, **data)
                    batch.append((grantee, json.dumps(event).encode(), event["event_id"]))
                await self._send(producer, batch)
                await asyncio.sleep(len(batch) / (self.rate_per_s / 2) * rng.uniform(0.5, 1.5))
        finally:
            self.gate.retire()
            await producer.stop()

    async def _send(self, producer: AIOKafkaProducer, batch: list[tuple[str, bytes, str]]) -> None:
        pending = list(batch)
        while pending:
            failed = []
            for key, value, event_id in pending:
                try:
                    await producer.send_and_wait(topics.ACCESS, value, key=key.encode())
                except Exception as exc:
                    self.errors[f"kafka gateway {type(exc).__name__}"] += 1
                    failed.append((key, value, event_id))
                else:
                    self.accepted.add("kafka", [event_id], [(key, value)])
            pending = failed
            if pending:
                await asyncio.sleep(0.5)

    def _http_gateway(self, rng: random.Random) -> None:
        try:
            with httpx.Client(timeout=5) as client:
                token = self.cluster.token("gateway")
                while self.gate.pass_(self.stopping):
                    batch = []
                    for _ in range(rng.randint(1, 5)):
                        grantee, data = self._access(rng)
                        batch.append(
                            {
                                **data,
                                "grantee_id": grantee,
                                "model_id": "mythos-preview",
                                "user_id": "user-1",
                                "request_id": f"req_{uuid.uuid4().hex[:12]}",
                                "event_id": str(uuid.uuid4()),
                            }
                        )
                    self._post(client, token, batch, rng)
                    time.sleep(len(batch) / (self.rate_per_s / 2) * rng.uniform(0.5, 1.5))
        finally:
            self.gate.retire()

    def _post(
        self, client: httpx.Client, token: str, batch: list[dict[str, Any]], rng: random.Random
    ) -> None:
        index = rng.randrange(self.cluster.replicas)
        while True:
            try:
                response = client.post(
                    self.cluster.url("enforcement", index) + "/v1/access",
                    json=batch,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.HTTPError as exc:
                self.errors[f"http gateway {type(exc).__name__}"] += 1
            else:
                if response.status_code == 202:
                    self.accepted.add("http", [a["event_id"] for a in batch])
                    return
                self.errors[f"http gateway {response.status_code}"] += 1
                if response.status_code < 500:
                    raise AssertionError(f"POST /v1/access refused: {response.text}")
            index = (index + 1) % self.cluster.replicas
            time.sleep(0.2)

    def _regulator_loop(self, rng: random.Random, every_s: float) -> None:
        while not self.stopping.wait(every_s * rng.uniform(0.5, 1.5)):
            try:
                self.regulate_once(rng)
            except AssertionError as exc:
                self.errors[f"regulator: {exc}"] += 1

    # ------------------------------------------------------------------ running

    def start(self, regulate_every_s: float = 1.5) -> None:
        rng = random.Random(self.seed)
        for grantee in REGULATED + POLICY:
            self.issue(grantee, rng)
        workers: list[tuple[Callable[..., None], tuple[Any, ...]]] = [
            (self._kafka_gateway, (random.Random(rng.random()),)),
            (self._http_gateway, (random.Random(rng.random()),)),
            (self._regulator_loop, (random.Random(rng.random()), regulate_every_s)),
        ]
        for target, args in workers:
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        self.gate.open()
        for thread in self._threads:
            thread.join(60)
