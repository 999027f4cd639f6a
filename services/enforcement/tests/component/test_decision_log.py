"""The decision logs (DESIGN §12) as the access pipeline keeps them, and as the service
serves them: one log per partition in offset order, written with the decisions, rebuilt
from the store to the same trees, and proofs that check out against signed checkpoints
and the key enforcement serves."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from carveout_enforcement.decision_log import DecisionLeaves, DecisionLog, decision_leaf, origin
from carveout_enforcement.handlers.access import AccessPipeline
from carveout_enforcement.handlers.grants import GrantIndex
from carveout_enforcement.store import DecisionCheckpoint, DecisionRecord
from carveout_runtime.merkle import MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from carveout_runtime.notes import NoteVerifier, open_checkpoint
from carveout_runtime.tlog import CheckpointBook, Checkpointer, TransparencyLogs

from .conftest import AUDITOR, EnforcementHarness, Starter, golden_bytes
from .test_access_pipeline import (
    CaughtUp,
    Record,
    World,
    access_bytes,
    compliant,
    event_id_of,
    golden_view,
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, GrantIndex([golden_view()]))


def logged(world: World) -> tuple[AccessPipeline, DecisionLog]:
    logs = TransparencyLogs(DecisionLeaves(world.store.engine))
    logs.load()
    pipeline = world.pipeline()
    pipeline.decision_log = DecisionLog(logs)
    return pipeline, pipeline.decision_log


def by_leaf(world: World, partition: int) -> list[DecisionRecord]:
    rows = [d for d in world.decisions() if d.log_partition == partition]
    return sorted(rows, key=lambda d: d.leaf_index or 0)


def grown(rows: list[DecisionRecord]) -> MerkleLog:
    tree = MerkleLog()
    for row in rows:
        tree.append(decision_leaf(row))
    return tree


async def test_each_partition_has_its_log_in_offset_order(world: World) -> None:
    pipeline, log = logged(world)
    values = {0: [access_bytes(), compliant(), compliant()], 1: [compliant(), access_bytes()]}
    records = [Record(v, partition=p, offset=n) for p in (1, 0) for n, v in enumerate(values[p])]
    await pipeline.process(records[:3])
    await pipeline.process(records[3:])
    await pipeline.process(records)  # delivered again: nothing is appended twice

    for partition, sent in values.items():
        rows = by_leaf(world, partition)
        assert [r.access_event_id for r in rows] == [event_id_of(v) for v in sent]
        assert [r.leaf_index for r in rows] == list(range(len(sent)))
        assert all(r.leaf_hash == leaf_hash(decision_leaf(r)) for r in rows)
        assert log.logs.tree(origin(partition)).root() == grown(rows).root()

    rebuilt = TransparencyLogs(DecisionLeaves(world.store.engine))
    rebuilt.load()
    assert rebuilt.names() == [origin(0), origin(1)]
    for name in rebuilt.names():
        assert rebuilt.tree(name).root() == log.logs.tree(name).root()


async def test_leaves_another_writer_appended_come_first(world: World) -> None:
    pipeline, log = logged(world)
    await pipeline.process([Record(compliant(), offset=0)])
    # Another replica sharing the store (after a rebalance) judged the next access.
    [first] = world.decisions()
    theirs = DecisionRecord(
        **{**first.model_dump(), "access_event_id": "their-access", "leaf_index": 1}
    )
    theirs.leaf_hash = leaf_hash(decision_leaf(theirs))
    with Session(world.store.engine) as session:
        session.add(theirs)
        session.commit()

    await pipeline.process([Record(compliant(), offset=1)])

    rows = by_leaf(world, 0)
    assert [r.leaf_index for r in rows] == [0, 1, 2]
    assert rows[1].access_event_id == "their-access"
    assert log.logs.tree(origin(0)).root() == grown(rows).root()


async def test_with_the_log_off_decisions_have_no_leaves(world: World) -> None:
    await world.pipeline().process([Record(compliant())])
    [row] = world.decisions()
    assert (row.log_partition, row.leaf_index, row.leaf_hash) == (None, None, None)


# ------------------------------------------------------------------------------ served


async def judged(harness: EnforcementHarness, count: int) -> list[str]:
    """``count`` accesses judged by the app's own pipeline (the grants log caught up)."""
    await harness.publish(golden_bytes("grant.issued"))
    pipeline = harness.context.pipeline
    pipeline.grants_log = CaughtUp()
    values = [compliant() for _ in range(count)]
    start = pipeline.judged
    await pipeline.process([Record(v, offset=start + n) for n, v in enumerate(values)])
    return [event_id_of(v) for v in values]


def sign(harness: EnforcementHarness, keys_dir: Path) -> Checkpointer:
    """A checkpointer on the service's store with the service's key, as its task runs it."""
    engine = harness.context.store.engine
    logs = TransparencyLogs(DecisionLeaves(engine))
    logs.load()
    signer = harness.context.settings.event_signing("enforcement").note_signer()

    async def publish(*_: Any) -> None:
        return None

    return Checkpointer(
        logs, CheckpointBook(engine, DecisionCheckpoint), signer, publish, "enforcement"
    )


async def served_verifier(harness: EnforcementHarness) -> NoteVerifier:
    keys = (await harness.client.get("/v1/keys", headers=AUDITOR)).json()["keys"]
    return NoteVerifier.from_vkey(keys[0]["note_verifier_key"])


async def test_a_decision_proof_checks_out_against_the_served_key(
    start_enforcement: Starter, tmp_path: Path
) -> None:
    async with start_enforcement(keys_dir=tmp_path / "keys") as harness:
        ids = await judged(harness, 5)
        checkpointer = sign(harness, tmp_path / "keys")
        await checkpointer.tick()
        answer = await harness.client.get(f"/v1/decisions/{ids[3]}/proof", headers=AUDITOR)
        assert answer.status_code == 200, answer.text
        proof = answer.json()
        verifier = await served_verifier(harness)
        checkpoint = open_checkpoint(proof["checkpoint"], [verifier], origin=proof["log"])
        assert (proof["log"], proof["leaf_index"], proof["tree_size"]) == (origin(0), 3, 5)
        assert checkpoint.size == 5
        path = [base64.b64decode(h) for h in proof["inclusion"]]
        hashed = leaf_hash(proof["leaf"].encode())
        assert verify_inclusion(hashed, 3, 5, path, checkpoint.root)
        assert f'"access_event_id":"{ids[3]}"' in proof["leaf"]

        more = await judged(harness, 3)
        await checkpointer.tick()
        listed = (await harness.client.get("/v1/checkpoints", headers=AUDITOR)).json()
        [latest] = listed["checkpoints"]
        assert (latest["log"], latest["size"]) == (origin(0), 8)
        consistency = await harness.client.get(
            "/v1/checkpoints/consistency",
            params={"log": origin(0), "from": 5, "to": 8},
            headers=AUDITOR,
        )
        new_root = open_checkpoint(latest["note"], [verifier]).root
        hashes = [base64.b64decode(h) for h in consistency.json()["proof"]]
        assert verify_consistency(5, 8, checkpoint.root, new_root, hashes)

        page = await harness.client.get(
            "/v1/leaves", params={"log": origin(0), "start": 5}, headers=AUDITOR
        )
        assert [leaf["entry_id"] for leaf in page.json()["leaves"]] == more


async def test_proofs_of_what_is_not_logged_are_refused_saying_why(
    start_enforcement: Starter, tmp_path: Path
) -> None:
    async with start_enforcement(keys_dir=tmp_path / "keys") as harness:
        [access] = await judged(harness, 1)
        get = harness.client.get
        answer = await get(f"/v1/decisions/{access}/proof", headers=AUDITOR)
        assert answer.status_code == 404
        assert "no signed checkpoint covers yet" in answer.json()["message"]
        answer = await get("/v1/decisions/nothing-judged/proof", headers=AUDITOR)
        assert (answer.status_code, answer.json()["error"]) == (404, "not_found")
        answer = await get(f"/v1/decisions/{'x' * 201}/proof", headers=AUDITOR)
        assert answer.status_code == 422
        assert (await get(f"/v1/decisions/{access}/proof")).status_code == 401
    async with start_enforcement(keys_dir=tmp_path / "keys2", decision_log=False) as harness:
        [access] = await judged(harness, 1)
        answer = await harness.client.get(f"/v1/decisions/{access}/proof", headers=AUDITOR)
        assert answer.status_code == 404
        assert "decision log off" in answer.json()["message"]
