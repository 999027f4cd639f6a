"""A decision's proof checked as an auditor would: a real log and a signed checkpoint."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carveout_console.proofs import ProofChecker
from carveout_runtime.merkle import MerkleLog
from carveout_runtime.notes import Checkpoint, NoteSigner, sign_checkpoint
from carveout_runtime.signing import TrustedKey, raw_public_key

LOG = "carveout.decisions/0"
LEAVES = [json.dumps({"access_event_id": f"a{i}", "decision": "deny"}) for i in range(5)]


def signed_proof(key: Ed25519PrivateKey, index: int = 3) -> tuple[dict[str, Any], list[Any]]:
    log = MerkleLog()
    for leaf in LEAVES:
        log.append(leaf.encode())
    signer = NoteSigner("carveout-enforcement", key)
    note = sign_checkpoint(Checkpoint(LOG, log.size, log.root()), signer)
    proof = {
        "log": LOG, "leaf_index": index, "tree_size": log.size, "leaf": LEAVES[index],
        "inclusion": [base64.b64encode(h).decode() for h in log.inclusion_proof(index)],
        "checkpoint": note,
    }  # fmt: skip
    public = raw_public_key(key.public_key())
    return proof, [{"public_key": base64.b64encode(public).decode()}]


def test_a_proof_against_a_signed_checkpoint_is_verified() -> None:
    proof, keys = signed_proof(Ed25519PrivateKey.generate())
    report = ProofChecker(None).check(proof, keys)
    assert report.verified, report.checks
    assert report.leaf == json.loads(LEAVES[3])


def test_a_changed_leaf_fails_inclusion() -> None:
    proof, keys = signed_proof(Ed25519PrivateKey.generate())
    proof["leaf"] = LEAVES[3].replace("deny", "allow")
    report = ProofChecker(None).check(proof, keys)
    assert not report.verified
    assert [c.name for c in report.checks if not c.ok] == ["inclusion"]


def test_a_checkpoint_signed_by_a_key_not_trusted_fails(tmp_path: Path) -> None:
    trusted = Ed25519PrivateKey.generate()
    entry = TrustedKey.of("enforcement", raw_public_key(trusted.public_key())).to_json()
    trusted_file = tmp_path / "trusted.json"
    trusted_file.write_text(json.dumps({"keys": [entry]}))
    proof, keys = signed_proof(Ed25519PrivateKey.generate())
    report = ProofChecker(trusted_file).check(proof, keys)
    assert not report.verified
    assert not report.checks[0].ok  # the served key is not one the file lists
