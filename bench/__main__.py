"""``make bench``: measure on the embedded broker, one machine; write ``var/bench.json``.

Figures (DESIGN targets in brackets): enforcement throughput and CPU cost (>= 25,000/s and
per CPU-second), over a bare pipeline's in the same run (>= 0.80), on PostgreSQL
(>= 15,000/s), and with its decision logs over without them (>= 0.90), decision API p99
over HTTP at 1,000 and 3,000 req/s (<= 3 and <= 5 ms) and gateway authorization's at
1,000 (<= 3 ms), in-process decision p99 (<= 50 us, and no slower than Cedar deciding the
same rules), and the broker's own round trip, the floor every latency is read against;
the replay rebuild of the enforcement store from the log the throughput run left
(>= 25,000 events/s); under 10,000 access events/s, revocation propagation to one
enforcement and to every replica of two, and breach detection (bench/propagation.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from carveout_enforcement.replay import replay as replay_enforcement
from carveout_ops.broker import EmbeddedBroker, ensure_topics, free_port, wait_for_broker

from . import authz, decide, enforcement, postgres, propagation

TARGETS = {
    "enforcement_events_per_s": ">= 25000",
    "enforcement_events_per_cpu_s": ">= 30000",
    "ceiling_events_per_s": "measured, same run",
    "enforcement_vs_ceiling": ">= 0.80",
    "enforcement_pg_events_per_s": ">= 15000",
    "enforcement_logged_vs_plain": ">= 0.90",
    "decision_http_p99_ms": "<= 3",
    "decision_http_3k_p99_ms": "<= 5",
    "authz_http_p99_ms": "<= 3",
    "propagation_p50_ms": "<= 10",
    "propagation_p99_ms": "<= 25",
    "propagation_all_p99_ms": "<= 50 (2 replicas)",
    "propagation_all_replicas": "2",
    "breach_detect_p50_ms": "<= 35",
    "breach_detect_p99_ms": "<= 60",
    "decide_p99_us": "<= 50, <= cedar",
    "cedar_decide_p99_us": "",
    "replay_events_per_s": ">= 25000",
    "broker_roundtrip_p99_ms": "",
}


async def broker_roundtrip_ms(bootstrap: str, rounds: int = 500) -> list[float]:
    """Produce one message and consume it back, ``rounds`` times."""
    topic = "carveout.bench.roundtrip"
    await ensure_topics(bootstrap, {topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=1)
    await producer.start()
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    samples = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            await producer.send_and_wait(topic, b"x")
            while not (await consumer.getmany(tp, timeout_ms=1000)).get(tp):
                pass
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        await producer.stop()
        await consumer.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="access events to judge")
    parser.add_argument("--out", type=Path, default=Path("var/bench.json"))
    args = parser.parse_args()
    console = Console()
    figures: dict[str, float] = {}
    pg = postgres.unavailable()
    if pg is not None:
        console.print(
            f"[yellow]{pg}: the figures on PostgreSQL are left out, and every replica's "
            "acknowledgement is measured with one enforcement replica[/]",
            highlight=False,
        )
    broker = EmbeddedBroker(port=free_port())
    broker.start()
    tasks: dict[str, TaskID] = {}
    with (
        tempfile.TemporaryDirectory() as workdir,
        Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            TextColumn("{task.completed:,}"),
            console=console,
            transient=True,
        ) as progress,
    ):

        def step(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done)

        service = None
        try:
            asyncio.run(wait_for_broker(broker.bootstrap))
            asyncio.run(ensure_topics(broker.bootstrap))
            step("broker round trip", 0, 1)
            roundtrip = asyncio.run(broker_roundtrip_ms(broker.bootstrap))
            step("broker round trip", 1, 1)
            figures["broker_roundtrip_p50_ms"] = round(statistics.median(roundtrip), 3)
            figures["broker_roundtrip_p99_ms"] = round(decide.percentile(roundtrip, 0.99), 3)

            step("in-process decisions", 0, 2)
            ours = decide.carveout_decide_us()
            step("in-process decisions", 1, 2)
            cedar = decide.cedar_decide_us()
            step("in-process decisions", 2, 2)
            figures["decide_p50_us"] = round(statistics.median(ours), 2)
            figures["decide_p99_us"] = round(decide.percentile(ours, 0.99), 2)
            figures["cedar_decide_p99_us"] = round(decide.percentile(cedar, 0.99), 2)

            rates, service = enforcement.throughput(
                broker.bootstrap, Path(workdir), args.events, step, with_postgres=pg is None
            )
            figures.update(rates)

            step("decision API", 0, 2)
            for n, (key, rate) in enumerate([("decision_http", 1000), ("decision_http_3k", 3000)]):
                latency = asyncio.run(enforcement.decision_latency_ms(service.port, rate=rate))
                step("decision API", n + 1, 2)
                figures[f"{key}_p50_ms"] = round(statistics.median(latency), 3)
                figures[f"{key}_p99_ms"] = round(decide.percentile(latency, 0.99), 3)

            step("authorization endpoint", 0, 2)
            for n, (key, record) in enumerate(
                [("authz_http", False), ("authz_recorded_http", True)]
            ):
                latency = asyncio.run(authz.authz_latency_ms(service.port, record=record))
                step("authorization endpoint", n + 1, 2)
                figures[f"{key}_p50_ms"] = round(statistics.median(latency), 3)
                figures[f"{key}_p99_ms"] = round(decide.percentile(latency, 0.99), 3)
            service.stop()
            service = None

            step("replay", 0, 1)
            report = asyncio.run(
                replay_enforcement(
                    bootstrap=broker.bootstrap,
                    database_url=f"sqlite:///{Path(workdir) / 'replayed.db'}",
                    progress=lambda what, done, total: step(f"replay {what}", done, total),
                )
            )
            figures["replay_events_per_s"] = round(report.events / report.seconds)
            figures["replay_events"] = report.events

            propagation_dir = Path(workdir) / "propagation"
            propagation_dir.mkdir()
            with postgres.database("replicas") if pg is None else nullcontext() as url:
                figures.update(
                    propagation.propagation_figures(broker.bootstrap, propagation_dir, step, url)
                )
        finally:
            if service is not None:
                service.stop()
            broker.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    table = Table(title=f"Carveout benchmarks ({args.out})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")
    for key, value in figures.items():
        table.add_row(key, f"{value:,}", TARGETS.get(key, ""))
    console.print(table)


if __name__ == "__main__":
    main()
