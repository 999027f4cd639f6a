"""RFC 6962 trees: the Certificate Transparency reference vectors, a plain transcription
of the RFC's recursive definitions, and pymerkle as an independent implementation."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree
from pymerkle import verify_consistency as pymerkle_verify_consistency

from carveout_runtime import merkle
from carveout_runtime.merkle import (
    EMPTY_ROOT,
    MerkleLog,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# The eight leaves and the roots of their prefixes used across the CT test suites
# (certificate-transparency C++/Go, transparency-dev/merkle proof/verify_test.go).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# (leaf index counting from 0, tree size, audit path)
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
# (old size, new size, consistency proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]


def log_of(leaves: list[bytes]) -> MerkleLog:
    log = MerkleLog()
    for leaf in leaves:
        log.append(leaf)
    return log


# --- RFC 6962 §2.1, transcribed literally (recursive, quadratic): the oracle. ---


def mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1 << ((len(d) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def rfc_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if m < k:
        return [*rfc_path(m, d[:k]), mth(d[k:])]
    return [*rfc_path(m - k, d[k:]), mth(d[:k])]


def rfc_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*rfc_subproof(m, d[:k], b), mth(d[k:])]
    return [*rfc_subproof(m - k, d[k:], False), mth(d[:k])]


# --- Reference vectors ---


def test_hashes_match_the_rfc6962_hasher_vectors() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleLog().root() == EMPTY_ROOT
    assert leaf_hash(b"") == CT_ROOTS[0]
    assert leaf_hash(b"L123456") == h(
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456") == h(
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_roots_match_the_ct_vectors_as_the_log_grows_and_afterwards() -> None:
    log = MerkleLog()
    for size, (leaf, want) in enumerate(zip(CT_LEAVES, CT_ROOTS, strict=True), start=1):
        assert log.append(leaf) == size - 1
        assert log.root() == want
    for size, want in enumerate(CT_ROOTS, start=1):
        assert log.root(size) == want
    assert log.root(0) == EMPTY_ROOT


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_inclusion_proofs_match_the_ct_vectors(index: int, size: int, path: list[bytes]) -> None:
    log = log_of(CT_LEAVES)
    assert log.inclusion_proof(index, size) == path
    assert verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, path, CT_ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_ct_vectors(old: int, new: int, proof: list[bytes]) -> None:
    log = log_of(CT_LEAVES)
    assert log.consistency_proof(old, new) == proof
    assert verify_consistency(old, new, CT_ROOTS[old - 1], CT_ROOTS[new - 1], proof)


def test_every_proof_over_the_ct_leaves_matches_the_rfc_text() -> None:
    log = log_of(CT_LEAVES)
    for n in range(1, 9):
        assert log.root(n) == mth(CT_LEAVES[:n])
        for m in range(n):
            assert log.inclusion_proof(m, n) == rfc_path(m, CT_LEAVES[:n])
        for m in range(1, n + 1):
            assert log.consistency_proof(m, n) == rfc_subproof(m, CT_LEAVES[:n], True)


# --- Independent implementation: pymerkle (RFC 6962 hashing with its default security) ---


def test_agrees_with_pymerkle_on_roots_and_proofs_up_to_200_leaves() -> None:
    rng = random.Random(6962)
    leaves = [rng.randbytes(rng.randrange(0, 40)) for _ in range(200)]
    ours, theirs = MerkleLog(), InmemoryTree(algorithm="sha256")
    for size, leaf in enumerate(leaves, start=1):
        ours.append(leaf)
        theirs.append_entry(leaf)
        assert ours.root() == theirs.get_root()
        assert ours.leaf_hash(size - 1) == theirs.get_leaf(size)
        # pymerkle's inclusion path is the leaf hash followed by the RFC 6962 audit path.
        for index in range(size):
            assert [ours.leaf_hash(index), *ours.inclusion_proof(index)] == (
                theirs.prove_inclusion(index + 1).path
            )
        # pymerkle shapes consistency proofs its own way; check both sides' proofs
        # against the roots of the other side.
        for old in range(1, size + 1):
            their_proof = theirs.prove_consistency(old, size)
            pymerkle_verify_consistency(ours.root(old), ours.root(), their_proof)
            assert verify_consistency(
                old, size, theirs.get_root(old), theirs.get_root(), ours.consistency_proof(old)
            )


# --- Properties ---

leaf_lists = st.lists(st.binary(max_size=24), min_size=1, max_size=70)


@settings(max_examples=200, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_every_inclusion_proof_verifies_and_a_tampered_one_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    log = log_of(leaves)
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof, root, hashed = log.inclusion_proof(index, size), log.root(size), log.leaf_hash(index)
    assert proof == rfc_path(index, leaves[:size])
    assert verify_inclusion(hashed, index, size, proof, root)

    assert not verify_inclusion(leaf_hash(leaves[index] + b"x"), index, size, proof, root)
    assert not verify_inclusion(hashed, index, size, proof, flip(root))
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="tampered hash")
        assert not verify_inclusion(hashed, index, size, tamper(proof, at), root)
        assert not verify_inclusion(hashed, index, size, proof[:-1], root)
    assert not verify_inclusion(hashed, index, size, [*proof, root], root)
    other = (index + 1) % size
    if leaves[other] != leaves[index]:
        assert not verify_inclusion(hashed, other, size, proof, root)


@settings(max_examples=200, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_every_consistency_proof_verifies_and_a_tampered_one_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    log = log_of(leaves)
    new = data.draw(st.integers(1, len(leaves)), label="new size")
    old = data.draw(st.integers(1, new), label="old size")
    proof, old_root, new_root = log.consistency_proof(old, new), log.root(old), log.root(new)
    assert proof == rfc_subproof(old, leaves[:new], True)
    assert verify_consistency(old, new, old_root, new_root, proof)

    assert not verify_consistency(old, new, flip(old_root), new_root, proof)
    assert not verify_consistency(old, new, old_root, flip(new_root), proof)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="tampered hash")
        assert not verify_consistency(old, new, old_root, new_root, tamper(proof, at))
        assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
    assert not verify_consistency(old, new, old_root, new_root, [*proof, new_root])
    # A log that rewrote an old leaf cannot prove it only appended.
    changed = list(leaves[:new])
    changed[data.draw(st.integers(0, old - 1), label="rewritten leaf")] += b"!"
    forged = log_of(changed)
    assert not verify_consistency(old, new, old_root, forged.root(), forged.consistency_proof(old))


def flip(digest: bytes) -> bytes:
    return bytes([digest[0] ^ 1]) + digest[1:]


def tamper(proof: list[bytes], at: int) -> list[bytes]:
    return [flip(p) if i == at else p for i, p in enumerate(proof)]


# --- Edges, bounds and cost ---


def test_verifiers_refuse_malformed_input_without_raising() -> None:
    log = log_of(CT_LEAVES)
    root, proof = log.root(), log.inclusion_proof(0)
    assert not verify_inclusion(log.leaf_hash(0), 0, 8, [*proof, *([root] * 200)], root)
    assert not verify_inclusion(log.leaf_hash(0), 0, 8, [p[:31] for p in proof], root)
    assert not verify_inclusion(log.leaf_hash(0), -1, 8, proof, root)
    assert not verify_inclusion(log.leaf_hash(0), 8, 8, proof, root)
    assert not verify_inclusion(log.leaf_hash(0), 0, 1 << 64, proof, root)
    assert not verify_inclusion(b"", 0, 1, [], b"")
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 8, EMPTY_ROOT, root, [])
    assert not verify_consistency(2, 1, CT_ROOTS[1], CT_ROOTS[0], [])
    assert not verify_consistency(3, 8, CT_ROOTS[2], root, [])
    assert not verify_consistency(8, 8, root, root, [root])
    assert verify_consistency(8, 8, root, root, [])


def test_the_log_refuses_out_of_range_requests() -> None:
    log = log_of(CT_LEAVES[:3])
    for call, says in (
        (lambda: log.root(4), "tree size 4"),
        (lambda: log.root(-1), "tree size -1"),
        (lambda: log.inclusion_proof(3), "leaf index 3"),
        (lambda: log.inclusion_proof(0, 0), "leaf index 0"),
        (lambda: log.consistency_proof(0, 3), "0 < old size"),
        (lambda: log.consistency_proof(3, 2), "0 < old size"),
        (lambda: log.leaf_hash(3), "leaf index 3"),
        (lambda: log.append_hash(b"short"), "32 bytes"),
    ):
        with pytest.raises(ValueError, match=says):
            call()


def test_appending_costs_at_most_one_plus_log2_n_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = merkle._sha256

    def counting(data: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real(data)

    monkeypatch.setattr(merkle, "_sha256", counting)
    log, total = MerkleLog(), 0
    for n in range(1, 4097):
        calls = 0
        log.append(n.to_bytes(4, "big"))
        # One leaf hash, plus one node per perfect subtree the append completes.
        assert calls <= 1 + n.bit_length()
        total += calls
    assert total < 2 * 4096  # amortised: two hashes per leaf
    calls = 0
    log.root()
    assert calls == 0  # a power-of-two tree's root is stored
    log.append(b"one more")
    calls = 0
    log.root()
    assert calls <= 13


@settings(max_examples=100, deadline=None)
@given(leaves=leaf_lists, cut=st.integers(min_value=0, max_value=64))
def test_extending_by_a_batch_grows_the_tree_appending_one_by_one_does(
    leaves: list[bytes], cut: int
) -> None:
    one_by_one, batched = MerkleLog(), MerkleLog()
    for leaf in leaves:
        one_by_one.append(leaf)
    hashed = [leaf_hash(leaf) for leaf in leaves]
    batched.extend_hashes(hashed[:cut])
    batched.extend_hashes(hashed[cut:])
    assert batched.size == one_by_one.size
    for size in range(1, len(leaves) + 1):
        assert batched.root(size) == one_by_one.root(size)
    if leaves:
        assert batched.inclusion_proof(0) == one_by_one.inclusion_proof(0)


def test_a_batch_with_a_malformed_hash_adds_nothing() -> None:
    log = MerkleLog()
    with pytest.raises(ValueError, match="32 bytes"):
        log.extend_hashes([leaf_hash(b"a"), b"short"])
    assert log.size == 0
