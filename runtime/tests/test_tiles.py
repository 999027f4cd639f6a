"""Tiled trees: the same roots and proofs as a whole tree in memory, from memory that does
not grow with every leaf, and a refusal when the store's leaves are gone or changed."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carveout_runtime.merkle import EMPTY_ROOT, MerkleLog, leaf_hash
from carveout_runtime.tiles import CompactRange, LeavesUnavailable, TiledLog


def hashes(count: int) -> list[bytes]:
    return [leaf_hash(str(n).encode()) for n in range(count)]


def tiled(stored: list[bytes], height: int = 2, cached: int = 2) -> TiledLog:
    def read(start: int, count: int) -> list[bytes]:
        return stored[start : start + count]

    return TiledLog(read, height=height, cached=cached)


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=90),
    cuts=st.lists(st.integers(min_value=1, max_value=90), max_size=4),
    height=st.integers(min_value=1, max_value=4),
    data=st.data(),
)
def test_a_tiled_tree_proves_what_a_whole_tree_proves(
    count: int, cuts: list[int], height: int, data: st.DataObject
) -> None:
    stored = hashes(count)
    whole, tree = MerkleLog(), tiled(stored, height)
    whole.extend_hashes(stored)
    start = 0
    for cut in [*sorted({c for c in cuts if c < count}), count]:
        tree.extend_hashes(stored[start:cut])
        start = cut
    assert tree.size == count
    for size in range(1, count + 1):
        assert tree.root(size) == whole.root(size)
    size = data.draw(st.integers(min_value=1, max_value=count))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    assert tree.inclusion_proof(index, size) == whole.inclusion_proof(index, size)
    old = data.draw(st.integers(min_value=1, max_value=size))
    assert tree.consistency_proof(old, size) == whole.consistency_proof(old, size)
    assert tree.leaf_hash(index) == stored[index]


def test_memory_holds_the_tiles_roots_and_the_last_tile_only() -> None:
    stored = hashes(10_000)
    tree = tiled(stored, height=4)
    for start in range(0, len(stored), 999):
        tree.extend_hashes(stored[start : start + 999])
    assert tree._levels == [[]]
    assert tree._tiles.size == 10_000 // 16
    assert len(tree._tail) == 10_000 % 16
    assert len(tree._cache) <= 2


def test_a_proof_from_leaves_the_store_no_longer_has_is_refused() -> None:
    stored = hashes(40)
    tree = tiled(stored, height=2, cached=0)
    tree.extend_hashes(stored)
    tree.inclusion_proof(5, 40)
    del stored[6:]  # rows deleted
    with pytest.raises(LeavesUnavailable, match="lacks leaf 6"):
        tree.inclusion_proof(5, 40)


def test_a_proof_from_leaves_the_store_changed_is_refused() -> None:
    stored = hashes(40)
    tree = tiled(stored, height=2, cached=0)
    tree.extend_hashes(stored)
    stored[9] = hashlib.sha256(b"another decision").digest()
    with pytest.raises(LeavesUnavailable, match="leaves 8 to 11 are not those logged"):
        tree.inclusion_proof(9, 40)
    whole = MerkleLog()
    whole.extend_hashes(hashes(40))
    assert tree.root() == whole.root()  # the roots of whole tiles need no store read


def test_a_compact_range_gives_every_root_in_log_memory() -> None:
    whole, edge = MerkleLog(), CompactRange()
    assert edge.root() == EMPTY_ROOT
    for hashed in hashes(300):
        whole.append_hash(hashed)
        edge.append_hash(hashed)
        assert edge.root() == whole.root()
        assert len(edge._roots) == bin(edge.size).count("1")
