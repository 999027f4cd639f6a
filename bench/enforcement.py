"""The enforcement service as its own process: throughput, CPU cost, decision API latency."""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from carveout_contracts import topics
from carveout_ops.broker import free_port
from carveout_ops.load import AccessTemplate, publish, scanning_traffic

from . import postgres
from .httpload import fixed_rate, post_json

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-grant.json"
TOKENS = {"regulator": "bench-r", "gateway": "bench-g", "auditor": "bench-a"}
DECISIONS = re.compile(rb'^carveout_decisions_total\{decision="(allow|deny)"\} ([0-9.e+]+)$', re.M)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def issue_demo_grant(bootstrap: str, grant_id: str = "grt_bench") -> None:
    body = json.loads(DEMO.read_text())
    event = {
        "event_id": "00000000-0000-4000-8000-0000000000b1",
        "type": "grant.issued",
        "version": 1,
        "occurred_at": "2026-06-28T00:00:00Z",
        "producer": "grant",
        "key": grant_id,
        "data": {**body, "grant_id": grant_id, "issued_by": "regulator"},
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topics.GRANTS, orjson.dumps(event), key=grant_id.encode())
    finally:
        await producer.stop()


@dataclass
class EnforcementProcess:
    bootstrap: str
    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] | None = None

    def start(self) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "CARVEOUT_KAFKA_BOOTSTRAP": self.bootstrap,
            "CARVEOUT_ENFORCEMENT_PORT": str(self.port),
            "CARVEOUT_ENFORCEMENT_DATABASE_URL": f"sqlite:///{self.workdir}/enforcement.db",
            "CARVEOUT_SESSION_TIMEOUT_MS": "3000",
            "CARVEOUT_REGULATOR_TOKEN": TOKENS["regulator"],
            "CARVEOUT_GATEWAY_TOKEN": TOKENS["gateway"],
            "CARVEOUT_AUDITOR_TOKEN": TOKENS["auditor"],
            # Signing keys, as `carveout up` gives: the decision logs' checkpoints are signed.
            "CARVEOUT_KEYS_DIR": str(self.workdir / "keys"),
            **(self.extra_env or {}),
        }
        log = open(self.workdir / "enforcement.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "carveout_enforcement", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def decisions(self) -> int:
        try:
            text = httpx.get(self.url + "/metrics", timeout=2).content
        except httpx.HTTPError:
            return 0
        return int(sum(float(n) for _, n in DECISIONS.findall(text)))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


NO_LOG = {"CARVEOUT_ENFORCEMENT_DECISION_LOG": "false"}
"""The service without its decision logs (DESIGN §12), to measure what they cost."""


PLAIN, LOGGED, CEILING = "plain", "logged", "ceiling"

RUNS = (
    *(PLAIN, LOGGED, CEILING, CEILING, LOGGED, PLAIN),
    *(LOGGED, CEILING, PLAIN, PLAIN, CEILING, LOGGED),
)
"""Runs without the decision logs, with them, and of the bare pipeline (the ceiling), in
two mirrored blocks: each kind's runs sit, on average, at the same place in the sequence,
so a machine whose speed drifts steadily over the runs weighs on every kind alike and the
ratios of the means are free of it; four runs a kind average out what is not steady. The
last run is with the logs: its service stays up for the decision API's figures."""

PG_RUNS = 2
"""Runs with the PostgreSQL store (the decision logs on), after those: the best counts."""


def throughput(
    bootstrap: str,
    workdir: Path,
    events: int,
    progress: Callable[[str, int, int], None],
    with_postgres: bool = True,
) -> tuple[dict[str, float], EnforcementProcess]:
    """Judge a backlog of ``events`` access events in the order of :data:`RUNS` (each run a
    process of its own, on a store and in consumer groups of its own, reading the backlog
    from its start), then :data:`PG_RUNS` times on a PostgreSQL store (``with_postgres``):
    wall and CPU time of the best run with the logs, the mean throughput with them over
    the mean without, and over the mean of the bare pipeline's (:mod:`bench.ceiling`). The
    last SQLite run's service stays up for the decision API's figures."""
    asyncio.run(issue_demo_grant(bootstrap))
    traffic = scanning_traffic(
        AccessTemplate(gateway_id="gw-bench"),
        events,
        start=datetime(2026, 7, 1, tzinfo=UTC),
        span=timedelta(days=42),
    )
    asyncio.run(publish(bootstrap, traffic, on_sent=lambda n: progress("publish", n, events)))
    runs: dict[str, list[dict[str, float]]] = {PLAIN: [], LOGGED: [], CEILING: []}
    service: EnforcementProcess | None = None
    for run, kind in enumerate(RUNS):
        if service is not None:
            service.stop()
            service = None
        folder = workdir if run == len(RUNS) - 1 else workdir / f"run-{run}"
        folder.mkdir(exist_ok=True)
        if kind == CEILING:
            runs[kind].append(ceiling(bootstrap, folder, f"carveout-ceiling-{run}", events))
            progress("ceiling", len(runs[kind]), RUNS.count(CEILING))
            continue
        env = {
            "CARVEOUT_ENFORCEMENT_GROUP_ID": f"carveout-enforcement-{run}",
            "CARVEOUT_ENFORCEMENT_ACCESS_GROUP_ID": f"carveout-enforcement-access-{run}",
            **({} if kind == LOGGED else NO_LOG),
        }
        figures, service = judge_backlog(
            EnforcementProcess(bootstrap, folder, extra_env=env), events, progress
        )
        runs[kind].append(figures)
    assert service is not None  # the last run's, with the logs

    def mean(kind: str, key: str = "enforcement_events_per_s") -> float:
        return statistics.fmean(figures[key] for figures in runs[kind])

    def best(kind: str) -> dict[str, float]:
        return max(runs[kind], key=lambda figures: figures["enforcement_events_per_s"])

    figures = {
        **best(LOGGED),
        "enforcement_plain_events_per_s": round(mean(PLAIN)),
        "enforcement_plain_events_per_cpu_s": round(mean(PLAIN, "enforcement_events_per_cpu_s")),
        "enforcement_logged_vs_plain": round(mean(LOGGED) / mean(PLAIN), 3),
        "ceiling_events_per_s": best(CEILING)["enforcement_events_per_s"],
        "ceiling_events_per_cpu_s": best(CEILING)["enforcement_events_per_cpu_s"],
        "enforcement_vs_ceiling": round(mean(LOGGED) / mean(CEILING), 3),
    }
    if with_postgres:
        figures.update(postgres_throughput(bootstrap, workdir, events, progress))
    return figures, service


def ceiling(bootstrap: str, folder: Path, group_id: str, events: int) -> dict[str, float]:
    """One run of the bare pipeline (:mod:`bench.ceiling`) over the backlog."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.ceiling",
            bootstrap,
            f"sqlite:///{folder}/ceiling.db",
            group_id,
            str(events),
        ],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the bare pipeline failed: {done.stderr.decode()[-2000:]}")
    figures = orjson.loads(done.stdout.splitlines()[-1])
    return {
        "enforcement_events_per_s": figures["events_per_s"],
        "enforcement_events_per_cpu_s": figures["events_per_cpu_s"],
    }


def postgres_throughput(
    bootstrap: str, workdir: Path, events: int, progress: Callable[[str, int, int], None]
) -> dict[str, float]:
    """The best of :data:`PG_RUNS` runs with the decision logs on a PostgreSQL store, each
    on a database made for it."""
    results = []
    for run in range(PG_RUNS):
        folder = workdir / f"pg-{run}"
        folder.mkdir()
        with postgres.database(f"enforcement{run}") as url:
            env = {
                "CARVEOUT_ENFORCEMENT_DATABASE_URL": url,
                "CARVEOUT_ENFORCEMENT_GROUP_ID": f"carveout-enforcement-pg-{run}",
                "CARVEOUT_ENFORCEMENT_ACCESS_GROUP_ID": f"carveout-enforcement-access-pg-{run}",
            }
            figures, service = judge_backlog(
                EnforcementProcess(bootstrap, folder, extra_env=env), events, progress, "judge (pg)"
            )
            service.stop()
        results.append(figures)
    best = max(results, key=lambda figures: figures["enforcement_events_per_s"])
    return {
        "enforcement_pg_events_per_s": best["enforcement_events_per_s"],
        "enforcement_pg_events_per_cpu_s": best["enforcement_events_per_cpu_s"],
    }


def judge_backlog(
    service: EnforcementProcess,
    events: int,
    progress: Callable[[str, int, int], None],
    what: str | None = None,
) -> tuple[dict[str, float], EnforcementProcess]:
    """Start ``service`` on the backlog and time it until it judged ``events``."""
    off = (service.extra_env or {}).get("CARVEOUT_ENFORCEMENT_DECISION_LOG") == "false"
    what = what or ("judge (no log)" if off else "judge")
    service.start()
    assert service.process is not None
    pid = service.process.pid
    first_wall = first_cpu = 0.0
    first_count = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        count = service.decisions()
        if count and not first_count:
            first_wall, first_cpu, first_count = time.perf_counter(), cpu_seconds(pid), count
        progress(what, count, events)
        if count >= events:
            break
        time.sleep(0.1)
    else:
        service.stop()
        raise RuntimeError(f"enforcement judged {service.decisions()} of {events} in time")
    wall = time.perf_counter() - first_wall
    cpu = cpu_seconds(pid) - first_cpu
    judged = events - first_count
    return {
        "enforcement_events_per_s": round(judged / wall),
        "enforcement_events_per_cpu_s": round(judged / cpu),
    }, service


async def decision_latency_ms(port: int, rate: int = 1000, seconds: float = 5.0) -> list[float]:
    """``POST /v1/decisions`` at ``rate`` requests per second; latency of each."""
    body = orjson.dumps(
        {
            "grantee_id": "org-netsec",
            "model_id": "mythos-preview",
            "user_id": "user-1",
            "user_country": "GB",
            "deployment_region": "us-east",
            "purpose": "vulnerability-scanning",
            "safeguards": ["access_logging", "mfa"],
            "units": 120,
            "gateway_id": "gw-bench",
        }
    )
    request = post_json("127.0.0.1", port, "/v1/decisions", body, TOKENS["gateway"])
    return await fixed_rate("127.0.0.1", port, request, rate=rate, seconds=seconds)
