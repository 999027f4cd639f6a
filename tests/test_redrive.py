"""Dead letters and re-drives with the whole system running (``carveout up``).

A poison record really dead-lettered by enforcement is listed with its reason and source;
re-driven while still poison, it is simply dead-lettered again. A record whose cause is
gone is processed once re-driven, and exactly once however often it is re-driven.

No running service gives up on a *valid* record (transient failures are retried, never
dead-lettered), so that entry is written the way a consumer that gave up after a
transient failure would leave it (reason ``failed``), with a valid access event as the
original: the cause has gone away, as it has once a store is back up or a consumer fixed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from carveout_contracts import codec, topics
from carveout_contracts.events import MessageDeadLettered
from carveout_ops import dlq
from carveout_ops.cli import app

from .kafka import access_event, signature
from .system import System, wait_for

pytestmark = pytest.mark.broker


def cli(system: System, *args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--bootstrap", system.bootstrap])
    assert result.exit_code == 0, result.output
    return result


async def _produce(bootstrap: str, topic: str, value: bytes, key: bytes) -> Any:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        headers = [*codec.headers(), *signature(bootstrap, topic, value)]
        return await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def entries(system: System) -> list[dlq.Entry]:
    return asyncio.run(dlq.load(system.bootstrap)).entries


def entry_from(system: System, partition: int, offset: int) -> dlq.Entry | None:
    """The entry enforcement wrote for the access record at ``partition``@``offset``."""
    for entry in entries(system):
        if entry.source == (topics.ACCESS, partition, offset) and entry.service == "enforcement":
            return entry
    return None


def total(system: System, what: str, grantee_id: str) -> int:
    answer = system.call(
        "enforcement", "GET", f"/v1/{what}", role="auditor", params={"grantee_id": grantee_id}
    )
    answer.raise_for_status()
    return int(answer.json()["total"])


def test_a_poison_record_is_listed_and_dead_lettered_again_when_re_driven(system: System) -> None:
    grantee = f"org-poison-{uuid.uuid4().hex[:8]}"
    poison = json.dumps({**access_event(grantee), "version": 7}).encode()
    sent = asyncio.run(_produce(system.bootstrap, topics.ACCESS, poison, grantee.encode()))

    entry = wait_for(
        lambda: entry_from(system, sent.partition, sent.offset), 15, "the poison dead-lettered"
    )
    listed = json.loads(
        cli(
            system, "dlq", "list", "--json", "--topic", "access", "--reason", "unsupported_version"
        ).stdout
    )
    [mine] = [e for e in listed if e["id"] == entry.id]
    assert mine["service"] == "enforcement"
    assert mine["source"] == {
        "topic": topics.ACCESS,
        "partition": sent.partition,
        "offset": sent.offset,
        "key": grantee,
    }
    assert "version 7" in mine["error"]
    assert mine["original"]["value"] == poison.decode()

    [copy] = json.loads(cli(system, "dlq", "redrive", "--id", entry.id, "--json").stdout)
    published = copy["published"]
    again = wait_for(
        lambda: entry_from(system, published["partition"], published["offset"]),
        15,
        "the re-driven poison dead-lettered again",
    )
    assert again.id != entry.id
    assert again.event.data.reason == "unsupported_version"
    assert again.original() == poison


def test_a_re_driven_record_is_processed_exactly_once(system: System) -> None:
    grantee = f"org-redrive-{uuid.uuid4().hex[:8]}"
    original = json.dumps(access_event(grantee)).encode()  # no grant: a no_active_grant breach
    data = codec.dead_letter_data(
        source_topic=topics.ACCESS,
        consumer="enforcement",
        reason="failed",
        error="store unavailable after 5 attempts",
        value=original,
        key=grantee.encode(),
        record_headers=codec.headers(),
    )
    letter = MessageDeadLettered(producer="enforcement", key=topics.ACCESS, data=data)
    asyncio.run(
        _produce(
            system.bootstrap, topics.DEADLETTER, codec.encode_value(letter), topics.ACCESS.encode()
        )
    )
    entry_id = str(letter.event_id)
    assert total(system, "decisions", grantee) == 0

    cli(system, "dlq", "redrive", "--id", entry_id)
    wait_for(lambda: total(system, "decisions", grantee) == 1, 15, "the re-driven access judged")
    wait_for(lambda: total(system, "breaches", grantee) == 1, 5, "its breach recorded")

    cli(system, "dlq", "redrive", "--id", entry_id)
    # A later access with the same key lands after the second copy, in the same partition:
    # once it is judged, the copy before it has been read too.
    later = json.dumps(access_event(grantee)).encode()
    asyncio.run(_produce(system.bootstrap, topics.ACCESS, later, grantee.encode()))
    wait_for(lambda: total(system, "decisions", grantee) >= 2, 15, "the later access judged")
    assert total(system, "decisions", grantee) == 2  # the original once, and the later one
    assert total(system, "breaches", grantee) == 2
    [mine] = [e for e in entries(system) if e.id == entry_id]
    assert len(mine.redrives) == 2
