"""The decision logs on SQLite and PostgreSQL: leaves placed in the recording transaction,
after whatever the stored log holds; trees rebuilt from the store; checkpoints kept."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from carveout_contracts import codec, topics
from carveout_enforcement.access import read_access
from carveout_enforcement.decision_log import DecisionLeaves, DecisionLog, decision_leaf, origin
from carveout_enforcement.domain import apply
from carveout_enforcement.handlers.grants import GrantIndex
from carveout_enforcement.outcomes import judge_batch
from carveout_enforcement.rows import DecisionRow
from carveout_enforcement.store import DecisionCheckpoint, EnforcementStore
from carveout_runtime.merkle import MerkleLog
from carveout_runtime.stores import make_engine
from carveout_runtime.tlog import CheckpointBook, SignedCheckpoint, TransparencyLogs

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"


@dataclass
class Record:
    partition: int


def decisions(count: int) -> list[DecisionRow]:
    issued = codec.decode(topics.GRANTS, (GOLDEN / "grant.issued.v1.json").read_bytes())
    index = GrantIndex([apply(None, issued, issued.data.grant_id)])
    access = read_access((GOLDEN / "access.recorded.v1.json").read_bytes(), 2e9)
    [decision] = judge_batch([(access, None)], index.candidates_received_by, {}, 7).decisions
    return [
        DecisionRow(
            **{
                **{f: getattr(decision, f) for f in decision.__struct_fields__},
                "access_event_id": f"access-{n}",
            }
        )
        for n in range(count)
    ]


def test_two_writers_on_one_store_never_give_a_leaf_index_twice(database_url: str) -> None:
    store = EnforcementStore(make_engine(database_url))
    mine = DecisionLog(TransparencyLogs(DecisionLeaves(store.engine)))
    theirs = DecisionLog(TransparencyLogs(DecisionLeaves(store.engine)))
    batches = decisions(6)
    sources = {d.access_event_id: Record(3) for d in batches}
    for log, batch in ((mine, batches[:2]), (theirs, batches[2:4]), (mine, batches[4:])):
        placement = asyncio.run(log.prepare(batch, sources))
        store.record_judgements(placement.decisions, [], {}, placement.settle)
        log.placed(placement)

    leaves = DecisionLeaves(store.engine).leaves(origin(3), 0, 100)
    assert [(leaf.index, leaf.entry_id) for leaf in leaves] == [
        (n, f"access-{n}") for n in range(6)
    ]
    expected = MerkleLog()
    for decision in batches:
        expected.append(decision_leaf(decision))
    assert mine.logs.tree(origin(3)).root() == expected.root()  # caught up with theirs
    rebuilt = TransparencyLogs(DecisionLeaves(store.engine))
    rebuilt.load()
    assert rebuilt.tree(origin(3)).root() == expected.root()


def test_checkpoints_are_kept_once_per_log_and_size(database_url: str) -> None:
    store = EnforcementStore(make_engine(database_url))
    book = CheckpointBook(store.engine, DecisionCheckpoint)
    first = SignedCheckpoint(origin(0), 2**40, "cm9vdA==", "note\n", "2026-07-01T00:00:00.000000Z")
    assert book.save(first) and not book.save(first)
    later = SignedCheckpoint(origin(0), 2**40 + 1, "cm9vdA==", "n\n", "2026-07-01T00:00:01.000000Z")
    book.save(later)
    assert book.latest() == [later] and book.at(origin(0), 2**40) == first
    assert [c.size for c in book.unpublished()] == [2**40, 2**40 + 1]
