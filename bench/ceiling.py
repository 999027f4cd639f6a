"""``python -m bench.ceiling BOOTSTRAP DATABASE GROUP EVENTS``: the bare pipeline, the
ceiling enforcement's throughput is read against (DESIGN §9).

A process of its own, as the enforcement service is: it consumes ``carveout.access`` in
batches with the enforcement's consumer settings, validates each record with the
contract's decoder, writes one row per access into the enforcement store's ``decisions``
table (same schema, indexes and SQLite settings) in one bulk insert per batch, commits,
and commits the batch's offsets; nothing else. It prints its throughput as JSON, timed
as the enforcement runs are, from its first batch committed to its ``EVENTS``-th access.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from carveout_contracts import codec, topics
from carveout_enforcement.rows import DecisionRow
from carveout_enforcement.settings import EnforcementSettings
from carveout_enforcement.store import EnforcementStore
from carveout_runtime.stores import make_engine

MAX_PARTITION_FETCH_BYTES = 8 * 1024 * 1024
"""As the enforcement's access subscriber fetches (``handlers.access.subscribe``)."""


def row(event: Any, judged_at: int) -> DecisionRow:
    """The row of one validated access: its facts, ``allow``, no leaf."""
    data = event.data
    return DecisionRow(
        access_event_id=str(event.event_id),
        request_id=data.request_id,
        grantee_id=data.grantee_id,
        model_id=data.model_id,
        grant_id=data.grant_id,
        grant_version=None,
        decision="allow",
        violations="[]",
        occurred_at=round(event.occurred_at.timestamp() * 1_000_000),
        judged_at=judged_at,
        user_id=data.user_id,
        gateway_id=data.gateway_id,
        units=data.units,
    )


async def run(bootstrap: str, database_url: str, group_id: str, events: int) -> dict[str, float]:
    settings = EnforcementSettings()
    store = EnforcementStore(make_engine(database_url))
    consumer = AIOKafkaConsumer(
        topics.ACCESS,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        session_timeout_ms=settings.session_timeout_ms,
    )
    await consumer.start()
    done = 0
    first_wall = first_cpu = 0.0
    first_count = 0
    try:
        while done < events:
            batch = await consumer.getmany(
                timeout_ms=settings.batch_timeout_ms, max_records=settings.batch_max_records
            )
            records = [record for part in batch.values() for record in part]
            if not records:
                continue
            judged_at = round(time.time() * 1_000_000)
            rows = [row(codec.decode(topics.ACCESS, r.value), judged_at) for r in records]
            await asyncio.to_thread(store.record_judgements, rows, [], {})
            await consumer.commit()
            done += len(rows)
            if not first_count:
                first_wall, first_cpu, first_count = time.perf_counter(), time.process_time(), done
    finally:
        await consumer.stop()
    wall = time.perf_counter() - first_wall
    cpu = time.process_time() - first_cpu
    judged = done - first_count
    return {"events_per_s": round(judged / wall), "events_per_cpu_s": round(judged / cpu)}


def main() -> None:
    bootstrap, database_url, group_id, events = sys.argv[1:5]
    figures = asyncio.run(run(bootstrap, database_url, group_id, int(events)))
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")


if __name__ == "__main__":
    main()
