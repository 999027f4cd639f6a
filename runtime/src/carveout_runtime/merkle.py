"""RFC 6962 Merkle trees for append-only logs: hashing, roots, and proofs.

Written by hand on purpose: the Python libraries offer either a whole tree object with
their own proof shapes or a recompute-everything root, while a transparency log needs
the RFC 6962 shapes exactly (PATH for inclusion, PROOF/SUBPROOF for consistency, as
served to and checked by outsiders) from a tree that grows one leaf at a time, at
O(log n) hashes per append. The whole spec fits in these few functions, each a direct
transcription of the RFC text it names, and they are tested against the Certificate
Transparency reference vectors and an independent implementation.

Hashing (RFC 6962 §2.1): a leaf is ``SHA-256(0x00 ‖ leaf)``, an interior node
``SHA-256(0x01 ‖ left ‖ right)``, and the empty tree's root is ``SHA-256("")``. The
tree over ``n`` leaves splits at ``k``, the largest power of two below ``n``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_TREE_SIZE = 1 << 64
"""Tree sizes are uint64 on the wire (RFC 9162); verifiers refuse larger ones."""

# With sizes below 2**64 no honest proof has more than 64 hashes for inclusion or 128
# for consistency, so a longer one is refused before any hashing.
_MAX_PROOF_HASHES = 128


def _sha256(data: bytes) -> bytes:
    # Every hash of this module goes through here, so a test can count them.
    return hashlib.sha256(data).digest()


def leaf_hash(leaf: bytes) -> bytes:
    """The RFC 6962 hash of one leaf: ``SHA-256(0x00 ‖ leaf)``."""
    return _sha256(b"\x00" + leaf)


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 hash of an interior node: ``SHA-256(0x01 ‖ left ‖ right)``."""
    return _sha256(b"\x01" + left + right)


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n`` > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleLog:
    """An append-only RFC 6962 tree held in memory.

    Besides the leaf hashes it keeps every complete (perfect, aligned) subtree's root,
    level by level: appending creates at most one new root per level, each exactly one
    hash, so an append costs at most ``1 + log2(n)`` hashes, and the root of any range
    a proof needs is a fold of at most ``log2(n)`` stored roots. The right edge of the
    current tree (its "compact range") is the last root of each level whose bit is set
    in the size.
    """

    def __init__(self) -> None:
        # _levels[h][i] is the root of leaves [i * 2**h, (i + 1) * 2**h).
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        """How many leaves the log holds."""
        return len(self._levels[0])

    def append(self, leaf: bytes) -> int:
        """Add a leaf (its bytes, hashed here) and return its index."""
        return self.append_hash(leaf_hash(leaf))

    def append_hash(self, hashed_leaf: bytes) -> int:
        """Add a leaf by its already computed leaf hash and return its index."""
        if len(hashed_leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash has {HASH_SIZE} bytes, not {len(hashed_leaf)}")
        index = self.size
        node, position, level = hashed_leaf, index, 0
        self._levels[0].append(node)
        # Each trailing one bit of the index closes a perfect subtree one level up.
        while position & 1:
            node = node_hash(self._levels[level][position - 1], node)
            level += 1
            position >>= 1
            if level == len(self._levels):
                self._levels.append([])
            self._levels[level].append(node)
        return index

    def extend_hashes(self, hashed_leaves: Sequence[bytes]) -> None:
        """:meth:`append_hash` of each, in order: the same tree, built a level at a time
        (a service appends a batch of thousands of leaves at once, and hashing each level's
        new pairs in one pass costs half what appending leaf by leaf does)."""
        if any(len(hashed) != HASH_SIZE for hashed in hashed_leaves):
            raise ValueError(f"a leaf hash has {HASH_SIZE} bytes")
        levels, sha256 = self._levels, hashlib.sha256
        levels[0].extend(hashed_leaves)
        level = 0
        # Each level gains the roots of the pairs of the level below that are now complete;
        # a level that gains none leaves every level above it as it was.
        while True:
            below = levels[level]
            done = 2 * len(levels[level + 1]) if level + 1 < len(levels) else 0
            if done + 1 >= len(below):
                return
            if level + 1 == len(levels):
                levels.append([])
            pairs = zip(below[done::2], below[done + 1 :: 2], strict=False)
            levels[level + 1].extend([sha256(b"\x01" + a + b).digest() for a, b in pairs])
            level += 1

    def leaf_hash(self, index: int) -> bytes:
        """The leaf hash stored at ``index``."""
        self._check_index(index, self.size)
        return self._node(0, index)

    def root(self, size: int | None = None) -> bytes:
        """The tree head: MTH of the first ``size`` leaves (default: all of them)."""
        size = self._check_size(size)
        return self._range_hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 §2.1.1 PATH(index, D[size]): the audit path, deepest sibling first."""
        size = self._check_size(size)
        self._check_index(index, size)
        path: list[bytes] = []
        start, end = 0, size
        # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) when m < k, else
        # PATH(m - k, D[k:n]) : MTH(D[0:k]). Walking down appends the outermost
        # sibling first, so the list is reversed at the end.
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self._range_hash(start + k, end))
                end = start + k
            else:
                path.append(self._range_hash(start, start + k))
                start += k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 §2.1.2 PROOF(old_size, D[new_size]) = SUBPROOF(m, D[n], true).

        A proof from the empty tree would prove nothing (every tree extends it), so
        ``old_size`` must be at least 1; equal sizes give the empty proof.
        """
        new_size = self._check_size(new_size)
        if not 0 < old_size <= new_size:
            raise ValueError(f"need 0 < old size <= new size, got {old_size} and {new_size}")
        proof: list[bytes] = []
        start, m, n, complete = 0, old_size, new_size, True
        # SUBPROOF(m, D[n], b): at m == n the old tree is this whole subtree, whose
        # root the verifier knows only when b (it is the old root itself); otherwise
        # recurse left (m <= k, adding MTH(D[k:n])) or right (adding MTH(D[0:k])).
        while m != n:
            k = _split(n)
            if m <= k:
                proof.append(self._range_hash(start + k, start + n))
                n = k
            else:
                proof.append(self._range_hash(start, start + k))
                start, m, n, complete = start + k, m - k, n - k, False
        if not complete:
            proof.append(self._range_hash(start, start + n))
        proof.reverse()
        return proof

    def _range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges RFC 6962's recursion produces.

        Such a range starts on a multiple of a power of two at least its length, so
        it is the perfect subtrees given by the bits of its length, largest first,
        folded from the right (RFC 6962 §2.1 applied repeatedly).
        """
        roots: list[bytes] = []
        position = start
        for level in range((end - start).bit_length() - 1, -1, -1):
            if (end - start) >> level & 1:
                roots.append(self._node(level, position >> level))
                position += 1 << level
        result = roots[-1]
        for left in reversed(roots[:-1]):
            result = node_hash(left, result)
        return result

    def _node(self, level: int, index: int) -> bytes:
        """The root of the ``index``-th perfect subtree of height ``level``: leaves
        ``[index * 2**level, (index + 1) * 2**level)``."""
        return self._levels[level][index]

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is not between 0 and {self.size}")
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is not below tree size {size}")


def _well_formed(hashes: Sequence[bytes], *sizes: int) -> bool:
    """Refuse, before any hashing, input no honest log could have sent."""
    return (
        len(hashes) <= _MAX_PROOF_HASHES
        and all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)
        and all(isinstance(s, int) and 0 <= s < MAX_TREE_SIZE for s in sizes)
    )


def verify_inclusion(
    hashed_leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows the leaf hash at ``index`` in the tree ``(size, root)``.

    RFC 9162 §2.1.3.2, step by step.
    """
    if not _well_formed([hashed_leaf, root, *proof], index, size) or index >= size:
        return False
    fn, sn, r = index, size - 1, hashed_leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree ``(new_size, new_root)`` extends
    ``(old_size, old_root)``.

    RFC 9162 §2.1.4.2, step by step; equal sizes need an empty proof and equal roots,
    and a proof from the empty tree is refused as meaningless (as the reference
    verifiers do): a caller treats "nothing seen yet" before calling this.
    """
    if not _well_formed([old_root, new_root, *proof], old_size, new_size):
        return False
    if old_size == 0 or old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)
