"""Transparency logs: trees rebuilt from the store equal the trees grown leaf by leaf,
checkpoints signed only when a log grew and verified by the served key, and the routes'
answers (checkpoints, consistency, leaves) checked the way an auditor checks them."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from carveout_contracts import CheckpointSigned, codec, topics
from carveout_runtime.edge import install_edge
from carveout_runtime.http import install_error_handlers
from carveout_runtime.merkle import MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from carveout_runtime.notes import NoteError, NoteSigner, open_checkpoint
from carveout_runtime.settings import SharedSettings
from carveout_runtime.stores import create_tables, make_engine
from carveout_runtime.tlog import (
    CheckpointBook,
    CheckpointColumns,
    Checkpointer,
    LeafEntry,
    TransparencyLogs,
)
from carveout_runtime.tlog_api import LogsOf, inclusion_proof, transparency_router


class _Tables(SQLModel, registry=registry()):
    pass


class _Checkpoint(CheckpointColumns, _Tables, table=True):
    __tablename__ = "checkpoints"


@dataclass
class ListSource:
    """A store of leaves in memory, as a service's store would answer."""

    logs: dict[str, list[bytes]] = field(default_factory=dict)
    missing: set[tuple[str, int]] = field(default_factory=set)
    reads: int = 0

    def log_names(self) -> list[str]:
        return sorted(self.logs)

    def _kept(self, log: str, start: int, limit: int) -> Iterator[tuple[int, bytes]]:
        kept = [
            (i, leaf)
            for i, leaf in enumerate(self.logs.get(log, []))
            if (log, i) not in self.missing and i >= start
        ]
        return iter(kept[:limit])

    def leaf_hashes(self, log: str, start: int, limit: int) -> list[tuple[int, bytes]]:
        self.reads += 1
        return [(i, leaf_hash(leaf)) for i, leaf in self._kept(log, start, limit)]

    def leaves(self, log: str, start: int, limit: int) -> list[LeafEntry]:
        return [
            LeafEntry(i, f"e{i}", leaf.decode(), leaf_hash(leaf))
            for i, leaf in self._kept(log, start, limit)
        ]


def leaves(n: int, tag: str = "x") -> list[bytes]:
    return [f'{{"{tag}":{i}}}'.encode() for i in range(n)]


def grown(items: list[bytes]) -> MerkleLog:
    tree = MerkleLog()
    for item in items:
        tree.append(item)
    return tree


def test_a_tree_rebuilt_from_the_store_is_the_tree_grown_leaf_by_leaf() -> None:
    source = ListSource({"a": leaves(1000), "b": leaves(3, "b")})
    logs = TransparencyLogs(source)
    logs.load()
    assert logs.names() == ["a", "b"]
    for name, items in source.logs.items():
        expected = grown(items)
        assert logs.size(name) == len(items)
        for size in (1, 2, 3, len(items) // 2, len(items)):
            if size <= len(items):
                assert logs.tree(name).root(size) == expected.root(size)


def test_a_tree_catches_up_with_leaves_another_writer_appended() -> None:
    source = ListSource({"a": leaves(10)})
    logs = TransparencyLogs(source)
    logs.load()
    source.logs["a"] += leaves(5, "y")  # another replica sharing the store
    mine = leaves(2, "z")
    source.logs["a"] += mine
    logs.place("a", 15, [leaf_hash(m) for m in mine])  # the tree is behind: it syncs
    assert logs.tree("a").root() == grown(source.logs["a"]).root()
    logs.place("a", 15, [leaf_hash(m) for m in mine])  # placed twice: nothing changes
    assert logs.size("a") == 17


def test_a_leaf_missing_from_the_store_stops_the_tree_there() -> None:
    source = ListSource({"a": leaves(8)}, missing={("a", 5)})
    logs = TransparencyLogs(source)
    logs.load()
    assert logs.size("a") == 5


def test_asking_for_an_unknown_log_makes_no_tree() -> None:
    logs = TransparencyLogs(ListSource({"a": leaves(2)}))
    assert logs.at_least("nope", 0) is None
    assert logs.names() == []
    assert logs.at_least("a", 3) is None
    assert logs.at_least("a", 2) is not None


@pytest.fixture
def book(tmp_path: Path) -> CheckpointBook:
    engine = make_engine(f"sqlite:///{tmp_path}/tlog.db")
    create_tables(engine, _Tables.metadata)
    return CheckpointBook(engine, _Checkpoint)


SIGNER = NoteSigner("carveout-enforcement", Ed25519PrivateKey.generate())


@dataclass
class Published:
    records: list[tuple[bytes, str, bytes]] = field(default_factory=list)
    fail: bool = False

    async def __call__(self, value: bytes, topic: str, key: bytes) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.records.append((value, topic, key))


async def test_checkpoints_are_signed_when_a_log_grows_and_published(
    book: CheckpointBook,
) -> None:
    source = ListSource({"carveout.decisions/0": leaves(3)})
    logs = TransparencyLogs(source)
    logs.load()
    published = Published()
    checkpointer = Checkpointer(logs, book, SIGNER, published, "enforcement")
    [first] = await checkpointer.tick()
    assert await checkpointer.tick() == []  # nothing grew: nothing signed
    source.logs["carveout.decisions/0"] += leaves(2, "y")
    [second] = await checkpointer.tick()  # grown in the store: the tick syncs, then signs
    assert (first.size, second.size) == (3, 5)

    checkpoint = open_checkpoint(second.note, [SIGNER.verifier], origin="carveout.decisions/0")
    assert checkpoint.root == grown(source.logs["carveout.decisions/0"]).root()
    assert base64.b64decode(second.root) == checkpoint.root
    assert [c.size for c in book.latest()] == [5]
    assert book.at("carveout.decisions/0", 3) == first

    events = [codec.decode(topics.CHECKPOINTS, value) for value, _, _ in published.records]
    assert all(isinstance(e, CheckpointSigned) for e in events)
    assert [(e.key, e.data.size, e.data.note) for e in events] == [
        ("carveout.decisions/0", 3, first.note),
        ("carveout.decisions/0", 5, second.note),
    ]
    other = NoteSigner("carveout-enforcement", Ed25519PrivateKey.generate())
    with pytest.raises(NoteError):  # another key does not verify it
        open_checkpoint(second.note, [other.verifier])


async def test_a_checkpoint_that_could_not_be_published_is_published_later(
    book: CheckpointBook,
) -> None:
    logs = TransparencyLogs(ListSource({"log": leaves(2)}))
    logs.load()
    published = Published(fail=True)
    checkpointer = Checkpointer(logs, book, SIGNER, published, "grant")
    with pytest.raises(ConnectionError):
        await checkpointer.tick()
    assert [c.size for c in book.unpublished()] == [2]  # signed and kept all the same
    published.fail = False
    assert await checkpointer.tick() == []
    assert len(published.records) == 1 and book.unpublished() == []


async def test_without_a_key_nothing_is_signed(book: CheckpointBook) -> None:
    logs = TransparencyLogs(ListSource({"log": leaves(2)}))
    logs.load()
    assert await Checkpointer(logs, book, None, Published(), "grant").tick() == []
    assert book.latest() == []


def test_two_replicas_signing_the_same_checkpoint_keep_one(book: CheckpointBook) -> None:
    logs = TransparencyLogs(ListSource({"log": leaves(2)}))
    logs.load()
    made = Checkpointer(logs, book, SIGNER, Published(), "grant").sign_grown()
    assert book.save(made[0]) is True
    assert book.save(made[0]) is False


# ---------------------------------------------------------------------------- routes


@pytest.fixture
def served(book: CheckpointBook) -> tuple[httpx.AsyncClient, ListSource, Checkpointer]:
    source = ListSource({"log": leaves(20)})
    logs = TransparencyLogs(source)
    logs.load()
    app = FastAPI()
    install_error_handlers(app)
    settings = SharedSettings(regulator_token="r", gateway_token="g", auditor_token="a")
    install_edge(app, settings)
    app.include_router(transparency_router(LogsOf(logs, book)))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return client, source, Checkpointer(logs, book, SIGNER, Published(), "grant")


AUDITOR = {"Authorization": "Bearer a"}


async def test_the_routes_answer_what_an_auditor_verifies(served: Any) -> None:
    client, source, checkpointer = served
    [old] = await checkpointer.tick()
    source.logs["log"] += leaves(13, "y")
    [new] = await checkpointer.tick()

    latest = (await client.get("/v1/checkpoints", headers=AUDITOR)).json()["checkpoints"]
    assert [(c["log"], c["size"], c["note"]) for c in latest] == [("log", 33, new.note)]
    at = await client.get("/v1/checkpoints", params={"log": "log", "size": 20}, headers=AUDITOR)
    assert at.json()["checkpoints"][0]["note"] == old.note

    answer = await client.get(
        "/v1/checkpoints/consistency",
        params={"log": "log", "from": 20, "to": 33},
        headers=AUDITOR,
    )
    assert answer.status_code == 200, answer.text
    proof = [base64.b64decode(h) for h in answer.json()["proof"]]
    roots = [open_checkpoint(c.note, [SIGNER.verifier]).root for c in (old, new)]
    assert verify_consistency(20, 33, roots[0], roots[1], proof)

    page = (
        await client.get(
            "/v1/leaves", params={"log": "log", "start": 30, "limit": 5}, headers=AUDITOR
        )
    ).json()
    assert [leaf["index"] for leaf in page["leaves"]] == [30, 31, 32]
    assert page["leaves"][0]["leaf"] == source.logs["log"][30].decode()


async def test_an_inclusion_proof_verifies_against_the_signed_checkpoint(
    served: Any, book: CheckpointBook
) -> None:
    _, source, checkpointer = served
    await checkpointer.tick()
    proof = inclusion_proof(LogsOf(checkpointer.logs, book), "log", 7, "leaf seven", "leaf 7")
    root = open_checkpoint(proof.checkpoint, [SIGNER.verifier]).root
    path = [base64.b64decode(h) for h in proof.inclusion]
    assert verify_inclusion(leaf_hash(source.logs["log"][7]), 7, proof.tree_size, path, root)


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"log": "nope"}, 404, "no checkpoint of log 'nope'"),
        ({"log": "log", "size": 3}, 404, "at size 3"),
        ({"size": 3}, 422, "size needs a log"),
        ({"log": "x" * 201}, 422, "log"),
        ({"log": "log", "size": -1}, 422, "size"),
        ({"log": "log", "color": "red"}, 422, "unknown query parameter"),
    ],
)
async def test_checkpoint_queries_that_name_nothing_are_refused_clearly(
    served: Any, params: dict[str, Any], status: int, says: str
) -> None:
    client, _, checkpointer = served
    await checkpointer.tick()
    answer = await client.get("/v1/checkpoints", params=params, headers=AUDITOR)
    assert answer.status_code == status
    assert says in answer.json()["message"]


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"log": "log", "from": 5, "to": 21}, 404, "no tree of size 21"),
        ({"log": "log", "from": 6, "to": 5}, 422, "from is above to"),
        ({"log": "log", "from": 0, "to": 5}, 422, "from"),
        ({"log": "nope", "from": 1, "to": 2}, 404, "no tree"),
        ({"log": "log", "from": 1}, 422, "to"),
        ({"log": "log", "from": 1, "to": 2**63}, 422, "to"),
    ],
)
async def test_consistency_queries_out_of_bounds_are_refused_clearly(
    served: Any, params: dict[str, Any], status: int, says: str
) -> None:
    client, *_ = served
    answer = await client.get("/v1/checkpoints/consistency", params=params, headers=AUDITOR)
    assert answer.status_code == status
    assert says in answer.json()["message"]


async def test_the_routes_are_for_regulators_and_auditors_only(served: Any) -> None:
    client, *_ = served
    for path in ("/v1/checkpoints", "/v1/leaves?log=log"):
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers={"Authorization": "Bearer g"})).status_code == 403
        assert (await client.get(path, headers={"Authorization": "Bearer r"})).status_code == 200


def test_the_checkpointer_keeps_its_rate(book: CheckpointBook) -> None:
    logs = TransparencyLogs(ListSource({"log": leaves(1)}))
    logs.load()
    published = Published()
    checkpointer = Checkpointer(logs, book, SIGNER, published, "grant", interval_s=0.05)

    async def run_a_while() -> None:
        task = asyncio.create_task(checkpointer.run_forever())
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(run_a_while())
    assert [c.size for c in book.latest()] == [1] and len(published.records) == 1


async def test_a_proof_over_leaves_the_store_changed_since_is_refused(
    book: CheckpointBook,
) -> None:
    source = ListSource({"log": leaves(10 * 1024 + 50)})  # the first tiles out of the cache
    logs = TransparencyLogs(source)
    logs.load()
    app = FastAPI()
    install_error_handlers(app)
    install_edge(app, SharedSettings(regulator_token="r", gateway_token="g", auditor_token="a"))
    app.include_router(transparency_router(LogsOf(logs, book)))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    params = {"log": "log", "from": 10, "to": 10 * 1024}
    source.logs["log"][9] = b'{"x": "another"}'  # a row of the first tile changed since
    answer = await client.get(CONSISTENCY, params=params, headers=AUDITOR)
    assert (answer.status_code, answer.json()["error"]) == (409, "log_damaged")
    assert "leaves 0 to 1023 are not those logged" in answer.json()["message"]


CONSISTENCY = "/v1/checkpoints/consistency"
