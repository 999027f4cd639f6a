"""RFC 6962 trees whose memory does not grow with every leaf.

A service's transparency log may take tens of thousands of leaves a second for months.
Holding every node in memory (:class:`~.merkle.MerkleLog`, some 160 bytes a leaf) would
grow by gigabytes an hour at that rate, so :class:`TiledLog` keeps only the roots of
complete *tiles* (perfect subtrees of ``2**height`` leaves, as C2SP tiled logs cut them),
the tree over them, and the last, incomplete tile's leaves: about 0.2 bytes a leaf with
tiles of 1,024. A proof that needs nodes inside a complete tile reads that tile's leaf
hashes back from the store (where they were written with what they record) and checks
them against the tile's root before using them, so a store changed since cannot make
the log prove something else.

:class:`CompactRange` is the other half: a tree's root at chosen sizes from a stream of
leaves in O(log n) memory, for whoever rebuilds a log from outside.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

from .merkle import EMPTY_ROOT, HASH_SIZE, MerkleLog, node_hash

ReadLeafHashes = Callable[[int, int], Sequence[bytes]]
"""``(start, count)``: the leaf hashes the store keeps from index ``start``, in order (fewer
than ``count`` when it lacks some)."""


class LeavesUnavailable(Exception):
    """Leaves a proof needs are missing from the store, or are not those once logged."""


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every perfect subtree's root over ``leaves``, level by level (complete pairs only)."""
    levels = [list(leaves)]
    sha256 = hashlib.sha256
    while len(levels[-1]) > 1:
        below = levels[-1]
        pairs = zip(below[::2], below[1::2], strict=False)
        levels.append([sha256(b"\x01" + a + b).digest() for a, b in pairs])
    return levels


class TiledLog(MerkleLog):
    """A :class:`~.merkle.MerkleLog` that keeps in memory only the tree over complete tiles'
    roots and the incomplete last tile, and reads a complete tile's leaf hashes from the
    store (``read``) when a proof needs a node inside it; the few tiles read last are
    kept (``cached``)."""

    def __init__(self, read: ReadLeafHashes, height: int = 10, cached: int = 8) -> None:
        super().__init__()
        self._read = read
        self._height = height
        self._width = 1 << height
        self._tiles = MerkleLog()
        """A tree whose leaves are the complete tiles' roots: the upper levels of this one."""
        self._tail: list[bytes] = []
        self._tail_levels: list[list[bytes]] | None = None
        self._cached = cached
        self._cache: OrderedDict[int, list[list[bytes]]] = OrderedDict()

    @property
    def size(self) -> int:
        return self._tiles.size * self._width + len(self._tail)

    def append_hash(self, hashed_leaf: bytes) -> int:
        index = self.size
        self.extend_hashes([hashed_leaf])
        return index

    def extend_hashes(self, hashed_leaves: Sequence[bytes]) -> None:
        if any(len(hashed) != HASH_SIZE for hashed in hashed_leaves):
            raise ValueError(f"a leaf hash has {HASH_SIZE} bytes")
        taken = 0
        while taken < len(hashed_leaves):
            room = self._width - len(self._tail)
            self._tail.extend(hashed_leaves[taken : taken + room])
            taken += room
            self._tail_levels = None
            if len(self._tail) == self._width:
                levels = _levels(self._tail)
                self._keep(self._tiles.size, levels)  # a new tile: proofs of it come first
                self._tiles.append_hash(levels[-1][0])
                self._tail = []

    def _keep(self, tile: int, levels: list[list[bytes]]) -> None:
        self._cache[tile] = levels
        self._cache.move_to_end(tile)
        while len(self._cache) > self._cached:
            self._cache.popitem(last=False)

    def _node(self, level: int, index: int) -> bytes:
        if level >= self._height:
            return self._tiles._node(level - self._height, index)
        tile = index >> (self._height - level)
        return self._tile(tile)[level][index - (tile << (self._height - level))]

    def _tile(self, tile: int) -> list[list[bytes]]:
        if tile == self._tiles.size:
            if self._tail_levels is None:
                self._tail_levels = _levels(self._tail)
            return self._tail_levels
        found = self._cache.get(tile)
        if found is not None:
            self._cache.move_to_end(tile)
            return found
        start = tile * self._width
        hashes = list(self._read(start, self._width))
        if len(hashes) != self._width or any(len(h) != HASH_SIZE for h in hashes):
            raise LeavesUnavailable(
                f"the store lacks leaf {start + len(hashes)}: the log cannot be proven past it"
            )
        levels = _levels(hashes)
        if levels[-1][0] != self._tiles._node(0, tile):
            raise LeavesUnavailable(
                f"the store's leaves {start} to {start + self._width - 1} are not those logged"
            )
        self._keep(tile, levels)
        return levels


class CompactRange:
    """The right edge of an RFC 6962 tree (one root per set bit of its size): appending is
    O(1) amortised, the root O(log n), and memory O(log n) however many leaves pass."""

    def __init__(self) -> None:
        self.size = 0
        self._roots: list[bytes] = []
        """Perfect subtrees' roots, largest (leftmost) first."""

    def append_hash(self, hashed_leaf: bytes) -> None:
        node, size = hashed_leaf, self.size
        # Each trailing one bit of the size merges the last root with the new subtree.
        while size & 1:
            node = node_hash(self._roots.pop(), node)
            size >>= 1
        self._roots.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self._roots:
            return EMPTY_ROOT
        result = self._roots[-1]
        for left in reversed(self._roots[:-1]):
            result = node_hash(left, result)
        return result
