"""Revocation propagation: the regulator's call returns -> enforcement denies, and ->
every live enforcement replica has acknowledged it on ``carveout.acks`` (DESIGN §12).

And breach detection: an access produced -> its ``condition.breached`` read by an outside
client.

Measured while enforcement judges a steady 10,000 access events per second (ordinary
traffic of a firm holding the demo grant, from a load process of its own), with the
grant and enforcement services as separate processes on the embedded broker: one
enforcement process on SQLite, then two replicas sharing a PostgreSQL database (as
``carveout up --replicas 2`` runs them) for every replica's acknowledgement.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from carveout_contracts import EnforcementHeartbeat, codec, topics
from carveout_ops.broker import free_port
from carveout_ops.load import AccessTemplate
from carveout_runtime.logread import partitions

from .decide import percentile
from .enforcement import TOKENS
from .httpload import post_json

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-grant.json"


def start(
    service: str,
    bootstrap: str,
    workdir: Path,
    port: int,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CARVEOUT_KAFKA_BOOTSTRAP": bootstrap,
        f"CARVEOUT_{service.upper()}_PORT": str(port),
        f"CARVEOUT_{service.upper()}_DATABASE_URL": f"sqlite:///{workdir}/{service}.db",
        "CARVEOUT_SESSION_TIMEOUT_MS": "3000",
        "CARVEOUT_REGULATOR_TOKEN": TOKENS["regulator"],
        "CARVEOUT_GATEWAY_TOKEN": TOKENS["gateway"],
        "CARVEOUT_AUDITOR_TOKEN": TOKENS["auditor"],
        **(extra_env or {}),
    }
    log = open(workdir / f"{service}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", f"carveout_{service}", "serve"], env=env, stdout=log, stderr=log
    )


ACCESS_GROUP = "carveout-enforcement-access-propagation"
"""The access consumer groups of the enforcement measured here are named after this, one
for each run: their own, started at the end of the access log (:func:`start_at_end`)."""


async def start_at_end(bootstrap: str, group_id: str, topic: str) -> None:
    """Commit ``group_id``'s offsets at the end of ``topic``: its consumer starts there.

    The runs before this one leave a backlog of access events on the log; read from its
    start, it would keep enforcement judging at full speed instead of at the load's pace,
    and the figures would be those of a saturated service, not of DESIGN §9's load.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await partitions(consumer, topic)
        if tps:
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            await consumer.commit({tp: end for tp, end in ends.items()})
    finally:
        await consumer.stop()


def wait_ready(url: str, log: Path, within: float = 60) -> None:
    deadline = time.monotonic() + within
    checks = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url + "/readyz", timeout=1)
            if answer.status_code == 200:
                return
            checks = answer.text
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise RuntimeError(f"{url} not ready within {within}s: {checks}\n{log}:\n{tail}")


ALIVE_FOR_S = 3.0
"""An enforcer counts as live while its last heartbeat is younger than this (DESIGN §12)."""


class TopicWatch:
    """A topic read by an outside client from its end, in a thread and event loop of its
    own (so reading it adds nothing to the decisions measured meanwhile); each event is
    noted (:meth:`_note`) with when it was read, on this process's ``time.perf_counter``
    clock."""

    topic: str

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._changed = threading.Condition()
        self._reading = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._read()), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._reading.wait(30):
            raise RuntimeError(f"could not read {self.topic}")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=1
        )
        await consumer.start()
        try:
            tps = await partitions(consumer, self.topic)
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)
            self._reading.set()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                seen = time.perf_counter()
                with self._changed:
                    for records in batch.values():
                        for record in records:
                            self._note(codec.decode(self.topic, record.value), seen)
                    self._changed.notify_all()
        finally:
            await consumer.stop()

    def _note(self, event: Any, seen: float) -> None:
        raise NotImplementedError


class AckWatch(TopicWatch):
    """``carveout.acks``: when each (grant, version) was acknowledged by each enforcer,
    and each enforcer's last heartbeat."""

    topic = topics.ACKS

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self.acked: dict[tuple[str, int], dict[str, float]] = {}
        self.beats: dict[str, float] = {}

    def _note(self, event: Any, seen: float) -> None:
        if isinstance(event, EnforcementHeartbeat):
            self.beats[event.data.enforcer_id] = seen
        else:
            key = (event.data.grant_id, event.data.version)
            self.acked.setdefault(key, {}).setdefault(event.data.enforcer_id, seen)

    def live(self) -> set[str]:
        now = time.perf_counter()
        return {e for e, seen in self.beats.items() if now - seen < ALIVE_FOR_S}

    def all_acknowledged(self, grant_id: str, version: int, within_s: float) -> float:
        """When the last live enforcer's ack of ``version`` arrived (``perf_counter``)."""
        key = (grant_id, version)

        def done() -> bool:
            live = self.live()
            return bool(live) and live <= set(self.acked.get(key, {}))

        with self._changed:
            if not self._changed.wait_for(done, within_s):
                raise RuntimeError(f"{grant_id} v{version}: not acknowledged by {self.live()}")
            return max(self.acked[key][e] for e in self.live())


async def _decision(reader: Any, writer: Any, request: bytes) -> dict[str, Any]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"
    )
    answer: dict[str, Any] = orjson.loads(await reader.readexactly(length))
    return answer


async def trials(
    grant_url: str,
    enforcement_port: int,
    count: int,
    progress: Callable[[str, int, int], None],
    acks: AckWatch,
    label: str = "",
) -> tuple[list[float], list[float]]:
    """Revoke ``count`` grants (of grantees named after ``label``); for each, from the
    call's return to enforcement denying, and to every live enforcer's acknowledgement read
    on ``carveout.acks``."""
    body = json.loads(DEMO.read_text())
    regulator = {"Authorization": f"Bearer {TOKENS['regulator']}"}
    samples, all_samples = [], []
    reader, writer = await asyncio.open_connection("127.0.0.1", enforcement_port)
    async with httpx.AsyncClient(base_url=grant_url, headers=regulator, timeout=10) as grant:
        for n in range(count):
            grantee = f"org-propagation-{label}{n}"
            issued = await grant.post(
                "/v1/grants", json={**body, "grantee": {**body["grantee"], "id": grantee}}
            )
            issued.raise_for_status()
            question = {
                "grantee_id": grantee,
                "model_id": "mythos-preview",
                "user_id": "u",
                "user_country": "GB",
                "deployment_region": "us-east",
                "purpose": "vulnerability-scanning",
                "safeguards": ["access_logging", "mfa"],
                "units": 1,
                "gateway_id": "gw-bench",
            }

            def ask_with(token: str | None, question: dict[str, Any] = question) -> bytes:
                body = {**question, "min_consistency": token} if token else question
                return post_json(
                    "127.0.0.1",
                    enforcement_port,
                    "/v1/decisions",
                    orjson.dumps(body),
                    TOKENS["gateway"],
                )

            ask = ask_with(issued.json()["consistency_token"])
            first = await _decision(reader, writer, ask)
            if first["decision"] != "allow":
                raise RuntimeError(f"{grantee}'s new grant does not allow: {first}")
            gid = issued.json()["grant_id"]
            revoked = await grant.post(f"/v1/grants/{gid}/revoke", json={"reason": "bench"})
            returned = time.perf_counter()
            revoked.raise_for_status()
            # One question carrying the revocation's token: enforcement answers the moment
            # it has applied the revocation (and says "deny"), so nothing polls.
            token = revoked.json()["consistency_token"]
            answer = await _decision(reader, writer, ask_with(token))
            samples.append((time.perf_counter() - returned) * 1000)
            if answer["decision"] != "deny" or not answer["consistency"]["met"]:
                raise RuntimeError(f"revocation not reflected: {answer}")
            version = revoked.json()["version"]
            acked = await asyncio.to_thread(acks.all_acknowledged, gid, version, 10.0)
            # An ack may be read before the call's answer is: it was in effect already.
            all_samples.append(max(0.0, acked - returned) * 1000)
            progress("propagation", n + 1, count)
    writer.close()
    return samples, all_samples


def issue_load_grant(grant_url: str, enforcement_ports: list[int]) -> None:
    regulator = {"Authorization": f"Bearer {TOKENS['regulator']}"}
    issued = httpx.post(
        grant_url + "/v1/grants", json=json.loads(DEMO.read_text()), headers=regulator
    )
    issued.raise_for_status()
    deadline = time.monotonic() + 10
    for port in enforcement_ports:
        known = f"http://127.0.0.1:{port}/v1/grants/{issued.json()['grant_id']}"
        while httpx.get(known, headers=regulator).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("enforcement never learnt of the load's grant")
            time.sleep(0.05)


@dataclass
class UnderLoad:
    """What one run under the load measured, in milliseconds."""

    spread: list[float]
    """The call returns → the enforcement asked denies (:func:`trials`)."""
    everywhere: list[float]
    """The call returns → every live enforcer's acknowledgement read (:func:`trials`)."""
    replicas: int
    """The live enforcers the acknowledgements were waited for."""
    breach_detect: list[float] = field(default_factory=list)
    """An access produced → its ``condition.breached`` read (:func:`breach_probes`)."""


def propagation_figures(
    bootstrap: str,
    workdir: Path,
    progress: Callable[[str, int, int], None],
    database_url: str | None = None,
) -> dict[str, float]:
    """``propagation_p50_ms``, ``propagation_p99_ms``, ``breach_detect_p50_ms`` and
    ``breach_detect_p99_ms`` from a run with one enforcement process (SQLite), then
    ``propagation_all_p99_ms`` (with its p50 and the number of live enforcement replicas it
    waited for) from a run with two replicas sharing the PostgreSQL ``database_url``; from
    the first run, with one replica, without ``database_url``."""
    one = workdir / "one-replica"
    one.mkdir()
    with AckWatch(bootstrap) as acks, BreachWatch(bootstrap) as breaches:
        first = measure(bootstrap, one, progress, acks, breaches=breaches)
    everywhere = first
    if database_url is not None:
        two = workdir / "two-replicas"
        two.mkdir()
        with AckWatch(bootstrap) as acks:
            everywhere = measure(
                bootstrap, two, progress, acks, replicas=2, database_url=database_url
            )
    return {
        "propagation_p50_ms": round(statistics.median(first.spread), 3),
        "propagation_p99_ms": round(percentile(first.spread, 0.99), 3),
        "propagation_all_p50_ms": round(statistics.median(everywhere.everywhere), 3),
        "propagation_all_p99_ms": round(percentile(everywhere.everywhere, 0.99), 3),
        "propagation_all_replicas": everywhere.replicas,
        "breach_detect_p50_ms": round(statistics.median(first.breach_detect), 3),
        "breach_detect_p99_ms": round(percentile(first.breach_detect, 0.99), 3),
    }


class BreachWatch(TopicWatch):
    """``carveout.breaches``: when the breach of each access was read."""

    topic = topics.BREACHES

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self.seen: dict[str, float] = {}

    def _note(self, event: Any, seen: float) -> None:
        access_event_id = getattr(event.data, "access_event_id", None)
        if access_event_id is not None:
            self.seen.setdefault(str(access_event_id), seen)

    def latencies_ms(self, sent: dict[str, float], within_s: float) -> list[float]:
        """From each access's send (``sent``, by event id, ``perf_counter``) to its
        breach read, once every one is read; raises after ``within_s``."""

        def all_read() -> bool:
            return sent.keys() <= self.seen.keys()

        with self._changed:
            if not self._changed.wait_for(all_read, within_s):
                missing = len(sent.keys() - self.seen.keys())
                raise RuntimeError(f"{missing} of {len(sent)} breaches not read in {within_s}s")
            return [(self.seen[event_id] - at) * 1000 for event_id, at in sent.items()]


PROBE = AccessTemplate(gateway_id="gw-probe", purpose="bench-probe", units=1)
"""An access of the load's firm for a purpose its grant does not allow: a ``warning``
breach each, which no breach policy counts (the load's grant stays as it is)."""

BREACHES_READ_WITHIN_S = 120.0
"""Longest wait, once the probes are sent and the load stopped, for every probe's breach."""


async def breach_probes(
    bootstrap: str, seconds: float, progress: Callable[[str, int, int], None]
) -> dict[str, float]:
    """Produce breaching accesses for ``seconds``, one at a time at random intervals (so
    that they fall anywhere in the enforcement's batches), each happening as it is sent,
    whatever became of the ones before (an open loop: a slow answer delays no later
    probe, so it weighs in every sample it delays). When each was sent, by event id."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    pause = random.Random(11)
    begin = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - begin) < seconds:
            event = PROBE.event()
            value, key = orjson.dumps(event), event["key"].encode()
            sent[event["event_id"]] = time.perf_counter()
            await producer.send_and_wait(
                topics.ACCESS, value, key=key, headers=[("content-type", b"application/json")]
            )
            progress("breach detection", round(elapsed), round(seconds))
            await asyncio.sleep(pause.uniform(0.01, 0.07))
    finally:
        await producer.stop()
    return sent


def measure(
    bootstrap: str,
    workdir: Path,
    progress: Callable[[str, int, int], None],
    acks: AckWatch,
    *,
    breaches: BreachWatch | None = None,
    replicas: int = 1,
    database_url: str | None = None,
    count: int = 40,
    probe_seconds: float = 15.0,
    rate: int = 10_000,
) -> UnderLoad:
    """Under the load: the two latencies of :func:`trials`, then, with ``breaches``, those
    of :func:`breach_probes` (read once the load stops, within
    :data:`BREACHES_READ_WITHIN_S`). ``replicas`` enforcement processes share the access group
    (and the store ``database_url``, SQLite in ``workdir`` without it); the trials ask
    the first."""
    grant_port = free_port()
    enforcement_ports = [free_port() for _ in range(replicas)]
    # A group for each run: the one before may still be leaving its own.
    access_group = f"{ACCESS_GROUP}-{replicas}"
    asyncio.run(start_at_end(bootstrap, access_group, topics.ACCESS))
    store = {"CARVEOUT_ENFORCEMENT_DATABASE_URL": database_url} if database_url else {}
    processes = [start("grant", bootstrap, workdir, grant_port)]
    for replica, port in enumerate(enforcement_ports):
        folder = workdir / f"enforcement-{replica}"
        folder.mkdir()
        env = {"CARVEOUT_ENFORCEMENT_ACCESS_GROUP_ID": access_group, **store}
        processes.append(start("enforcement", bootstrap, folder, port, env))
    enforcement_port = enforcement_ports[0]
    grant_url = f"http://127.0.0.1:{grant_port}"
    try:
        wait_ready(grant_url, workdir / "grant.log")
        for replica, port in enumerate(enforcement_ports):
            log = workdir / f"enforcement-{replica}" / "enforcement.log"
            wait_ready(f"http://127.0.0.1:{port}", log)
        load_seconds = 180.0
        # The load is ordinary traffic of a firm holding the demo grant: judged and allowed.
        issue_load_grant(grant_url, enforcement_ports)

        # The load comes from a process of its own, as gateways do: sharing this process's
        # event loop would add the generator's own delays to every measured answer.
        load = subprocess.Popen(
            [sys.executable, "-m", "bench.load", bootstrap, str(rate), str(load_seconds)],
            cwd=Path(__file__).resolve().parents[1],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        async def run() -> UnderLoad:
            await asyncio.sleep(3)  # let the load reach its pace
            try:
                spread, everywhere = await trials(
                    grant_url, enforcement_port, count, progress, acks, label=f"{replicas}r"
                )
                live = len(acks.live())
                detect = []
                if breaches is not None:
                    sent = await breach_probes(bootstrap, probe_seconds, progress)
                    load.terminate()
                    within = BREACHES_READ_WITHIN_S
                    detect = await asyncio.to_thread(breaches.latencies_ms, sent, within)
                return UnderLoad(spread, everywhere, live, detect)
            finally:
                load.terminate()
                async with httpx.AsyncClient() as client:
                    checks = (
                        await client.get(f"http://127.0.0.1:{enforcement_port}/readyz")
                    ).json()
                progress(f"access backlog at the end: {checks['checks'].get('access')}", 1, 1)

        return asyncio.run(run())
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
