"""The grant history log (DESIGN §12): each grant event a leaf, its value bytes as
published, appended in the transaction that records it; proofs of a grant's events that
check out against checkpoints signed with the key the service serves."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from carveout_grant.deps import GrantContext
from carveout_grant.store import GrantCheckpoint, GrantEventRecord, GrantLogLeaf
from carveout_grant.transparency import ORIGIN, GrantHistory
from carveout_runtime.composition import context_of
from carveout_runtime.merkle import MerkleLog, leaf_hash, verify_inclusion
from carveout_runtime.notes import NoteVerifier, open_checkpoint
from carveout_runtime.tlog import CheckpointBook, Checkpointer, TransparencyLogs

from .conftest import AUDITOR, REGULATOR, GrantHarness, Starter, make_settings


def checkpointer(harness: GrantHarness, tmp_path: Path) -> Checkpointer:
    """A checkpointer on the service's store with its key, as its background task runs."""
    engine = context_of(harness.app, GrantContext).service.store.engine
    logs = TransparencyLogs(GrantHistory(engine), names=[ORIGIN])
    logs.load()
    signer = make_settings(tmp_path, keys_dir=tmp_path / "keys").event_signing("grant")

    async def publish(*_: Any) -> None:
        return None

    book = CheckpointBook(engine, GrantCheckpoint)
    return Checkpointer(logs, book, signer.note_signer(), publish, "grant")


async def issue_and_suspend(harness: GrantHarness, body: dict[str, Any]) -> tuple[str, list[str]]:
    issued = (await harness.client.post("/v1/grants", json=body, headers=REGULATOR)).json()
    grant_id = issued["grant_id"]
    suspended = await harness.client.post(
        f"/v1/grants/{grant_id}/suspend", json={"reason": "check"}, headers=REGULATOR
    )
    return grant_id, [issued["event_id"], suspended.json()["event_id"]]


async def test_every_recorded_event_is_a_leaf_of_the_grant_history(
    start_grant: Starter, tmp_path: Path, demo_body: dict[str, Any]
) -> None:
    async with start_grant(keys_dir=tmp_path / "keys") as harness:
        await issue_and_suspend(harness, demo_body)
        await issue_and_suspend(harness, {**demo_body, "carveout_id": "co-2"})
        engine = harness.service.store.engine
        with Session(engine) as session:
            events = session.exec(select(GrantEventRecord).order_by(col(GrantEventRecord.seq)))
            payloads = [(e.event_id, e.payload) for e in events]
            leaves = session.exec(select(GrantLogLeaf).order_by(col(GrantLogLeaf.leaf_index)))
            logged = [(leaf.leaf_index, leaf.event_id, leaf.leaf_hash) for leaf in leaves]
        assert logged == [
            (n, event_id, leaf_hash(payload.encode()).hex())
            for n, (event_id, payload) in enumerate(payloads)
        ]
        # The leaves are the values as published, byte for byte.
        assert [r.value for r in harness.published] == [p.encode() for _, p in payloads]


async def test_a_grant_events_proof_checks_out_against_the_served_key(
    start_grant: Starter, tmp_path: Path, demo_body: dict[str, Any]
) -> None:
    async with start_grant(keys_dir=tmp_path / "keys") as harness:
        grant_id, [_, suspended] = await issue_and_suspend(harness, demo_body)
        await checkpointer(harness, tmp_path).tick()
        keys = (await harness.client.get("/v1/keys", headers=AUDITOR)).json()["keys"]
        verifier = NoteVerifier.from_vkey(keys[0]["note_verifier_key"])
        answer = await harness.client.get(
            f"/v1/grants/{grant_id}/events/{suspended}/proof", headers=AUDITOR
        )
        assert answer.status_code == 200, answer.text
        proof = answer.json()
        assert (proof["log"], proof["leaf_index"], proof["tree_size"]) == (ORIGIN, 1, 2)
        assert proof["leaf"].encode() == harness.published[1].value
        checkpoint = open_checkpoint(proof["checkpoint"], [verifier], origin=ORIGIN)
        path = [base64.b64decode(h) for h in proof["inclusion"]]
        assert verify_inclusion(leaf_hash(proof["leaf"].encode()), 1, 2, path, checkpoint.root)

        tree = MerkleLog()
        for record in harness.published:
            tree.append(record.value)
        assert checkpoint.root == tree.root()

        listed = (await harness.client.get("/v1/checkpoints", headers=AUDITOR)).json()
        assert [(c["log"], c["size"]) for c in listed["checkpoints"]] == [(ORIGIN, 2)]


async def test_proofs_of_events_not_of_the_grant_are_refused(
    start_grant: Starter, tmp_path: Path, demo_body: dict[str, Any]
) -> None:
    async with start_grant(keys_dir=tmp_path / "keys") as harness:
        grant_id, [issued, _] = await issue_and_suspend(harness, demo_body)
        other, _ = await issue_and_suspend(harness, {**demo_body, "carveout_id": "co-2"})
        get = harness.client.get
        answer = await get(f"/v1/grants/{grant_id}/events/{issued}/proof", headers=AUDITOR)
        assert answer.status_code == 404  # no checkpoint yet
        assert "no signed checkpoint covers yet" in answer.json()["message"]
        await checkpointer(harness, tmp_path).tick()
        answer = await get(f"/v1/grants/{other}/events/{issued}/proof", headers=AUDITOR)
        assert answer.status_code == 404
        assert "does not concern" in answer.json()["message"]
        answer = await get(f"/v1/grants/{grant_id}/events/nope/proof", headers=AUDITOR)
        assert answer.status_code == 404
        answer = await get(f"/v1/grants/{grant_id}/events/{issued}/proof", headers=REGULATOR)
        assert answer.status_code == 200
        assert (await get(f"/v1/grants/{grant_id}/events/{issued}/proof")).status_code == 401


async def test_events_recorded_before_the_history_was_kept_are_logged_at_start(
    start_grant: Starter, demo_body: dict[str, Any]
) -> None:
    async with start_grant() as harness:
        await issue_and_suspend(harness, demo_body)
        published = [r.value.decode() for r in harness.published]
        with Session(harness.service.store.engine) as session:  # as an earlier release left it
            for leaf in session.exec(select(GrantLogLeaf)):
                session.delete(leaf)
            session.commit()
    async with start_grant() as harness:
        history = GrantHistory(harness.service.store.engine)
        leaves = history.leaves(ORIGIN, 0, 10)
        assert [(leaf.index, leaf.leaf) for leaf in leaves] == list(enumerate(published))
