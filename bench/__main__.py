"""``make bench``: measure on the embedded broker and write ``var/bench.json``.

This first harness measures the broker's own round trip, the floor every latency is read
against; the enforcement, decision, propagation and replay figures join it as those
capabilities land.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import track
from rich.table import Table

from carveout_ops.broker import EmbeddedBroker, ensure_topics, free_port, wait_for_broker

ROUNDS = 500


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def broker_roundtrip_ms(bootstrap: str) -> list[float]:
    """Produce one message and consume it back, ``ROUNDS`` times."""
    await ensure_topics(bootstrap)
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
        for _ in track(range(ROUNDS), description="broker round trip"):
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
    console = Console()
    broker = EmbeddedBroker(port=free_port())
    broker.start()
    try:
        asyncio.run(wait_for_broker(broker.bootstrap))
        roundtrip = asyncio.run(broker_roundtrip_ms(broker.bootstrap))
    finally:
        broker.stop()
    figures = {
        "broker_roundtrip_p50_ms": round(statistics.median(roundtrip), 3),
        "broker_roundtrip_p99_ms": round(percentile(roundtrip, 0.99), 3),
    }
    out = Path("var/bench.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    table = Table(title=f"Carveout benchmarks (written to {out})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, str(value))
    console.print(table)


if __name__ == "__main__":
    main()
