"""Provable control (DESIGN §12) through `carveout up`: a decision's inclusion proof and a
consistency proof checked against signed checkpoints and enforcement's served key,
`carveout audit verify` (with and without --from-log) passing on the untouched system
and failing, naming the log and the leaf, once a stored decision is changed or deleted;
and a grant's evidence file exported, verified offline, and refused once tampered with."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carveout_ops.evidence import Evidence, verify_evidence
from carveout_runtime.keyfiles import load_trusted_keys
from carveout_runtime.merkle import leaf_hash, verify_consistency, verify_inclusion
from carveout_runtime.notes import NoteVerifier, open_checkpoint

from .kafka import access_event
from .system import System, wait_for
from .test_enforcement import issue, judge_all

pytestmark = pytest.mark.broker

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def carveout(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carveout_ops", *args],
        env={**system.env(), "CARVEOUT_KAFKA_BOOTSTRAP": system.bootstrap},
        capture_output=True,
        text=True,
        timeout=180,
    )


def proof_of(system: System, access_event_id: str) -> dict[str, Any]:
    """The decision's proof, once a checkpoint covers it (they are signed every second)."""

    def signed() -> dict[str, Any] | None:
        answer = system.call(
            "enforcement", "GET", f"/v1/decisions/{access_event_id}/proof", role="auditor"
        )
        return answer.json() if answer.status_code == 200 else None

    return wait_for(signed, 5, f"a proof of the decision on {access_event_id}")


def enforcement_verifier(system: System) -> NoteVerifier:
    keys = system.call("enforcement", "GET", "/v1/keys", role="auditor").json()["keys"]
    [current] = [key for key in keys if key["current"]]
    return NoteVerifier.from_vkey(current["note_verifier_key"])


def judge(system: System, grantee: str, count: int, **data: Any) -> list[str]:
    events = [access_event(grantee, T0 + timedelta(seconds=n), **data) for n in range(count)]
    judge_all(system, grantee, events)
    return [e["event_id"] for e in events]


@pytest.fixture(scope="module")
def grant(system: System, demo_grant: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body = {
        **demo_grant,
        "valid_from": (now - timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        "valid_until": (now + timedelta(days=30)).isoformat().replace("+00:00", "Z"),
    }
    issued = issue(system, body, "org-audit")
    judge(system, "org-audit", 6)
    judge(system, "org-audit", 2, user_country="KP")  # two critical breaches
    return issued


@pytest.fixture(scope="module")
def demo_grant() -> dict[str, Any]:
    from .conftest import DEMO_GRANT

    loaded: dict[str, Any] = json.loads(DEMO_GRANT.read_text())
    return loaded


def test_a_decisions_proof_and_a_consistency_proof_check_out(
    system: System, grant: dict[str, Any]
) -> None:
    [first, *_] = judge(system, "org-audit", 3)
    proof = proof_of(system, first)
    verifier = enforcement_verifier(system)
    checkpoint = open_checkpoint(proof["checkpoint"], [verifier], origin=proof["log"])
    assert proof["log"].startswith("carveout.decisions/")
    assert json.loads(proof["leaf"])["access_event_id"] == first
    path = [base64.b64decode(h) for h in proof["inclusion"]]
    assert verify_inclusion(
        leaf_hash(proof["leaf"].encode()),
        proof["leaf_index"],
        checkpoint.size,
        path,
        checkpoint.root,
    )

    more = judge(system, "org-audit", 2)
    later = proof_of(system, more[-1])
    newer = open_checkpoint(later["checkpoint"], [verifier], origin=proof["log"])
    assert newer.size > checkpoint.size
    answer = system.call(
        "enforcement",
        "GET",
        "/v1/checkpoints/consistency",
        role="auditor",
        params={"log": proof["log"], "from": checkpoint.size, "to": newer.size},
    ).json()
    hashes = [base64.b64decode(h) for h in answer["proof"]]
    assert verify_consistency(checkpoint.size, newer.size, checkpoint.root, newer.root, hashes)


def test_proofs_check_out_with_an_independent_rfc6962_tree_and_the_bare_ed25519_key(
    system: System, grant: dict[str, Any]
) -> None:
    """What an outside auditor does with no Carveout code: read the log's leaves, build the
    tree with pymerkle (an independent RFC 6962 implementation), compare its roots and
    audit path with the signed checkpoints and the served proofs, and check each
    checkpoint's signed note with the raw Ed25519 key of GET /v1/keys (cryptography)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from pymerkle import InmemoryTree

    [first, *_] = judge(system, "org-audit", 3)
    proof = proof_of(system, first)
    log = proof["log"]
    more = judge(system, "org-audit", 2)
    later = proof_of(system, more[-1])

    [key] = [
        k
        for k in system.call("enforcement", "GET", "/v1/keys", role="auditor").json()["keys"]
        if k["current"]
    ]
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))

    def opened(note: str) -> tuple[int, bytes]:
        """The checkpoint's size and root, once its signature line checks out (C2SP
        signed-note: key name, then base64 of the 4-byte key id and the signature)."""
        body, _, signatures = note.partition("\n\n")
        text = body + "\n"
        [line] = [
            s for s in signatures.splitlines() if s.startswith("\u2014 carveout-enforcement ")
        ]
        blob = base64.b64decode(line.rsplit(" ", 1)[1])
        public.verify(blob[4:], text.encode())  # raises on a bad signature
        origin, size, root = body.split("\n")[:3]
        assert origin == log
        return int(size), base64.b64decode(root)

    old_size, old_root = opened(proof["checkpoint"])
    new_size, new_root = opened(later["checkpoint"])
    assert new_size > old_size

    tree = InmemoryTree(algorithm="sha256")
    start = 0
    while start < new_size:
        page = system.call(
            "enforcement",
            "GET",
            "/v1/leaves",
            role="auditor",
            params={"log": log, "start": start, "limit": 1000},
        ).json()["leaves"]
        assert page, f"the log has {new_size} leaves"
        for leaf in page[: new_size - start]:
            tree.append_entry(leaf["leaf"].encode())
        start += len(page)
    assert tree.get_root(old_size) == old_root
    assert tree.get_root(new_size) == new_root  # both checkpoints: prefixes of one log
    served = [base64.b64decode(h) for h in proof["inclusion"]]
    path = tree.prove_inclusion(proof["leaf_index"] + 1, old_size).path
    assert [tree.get_leaf(proof["leaf_index"] + 1), *served] == path


def test_audit_verify_passes_then_names_a_changed_or_deleted_decision(
    system: System, grant: dict[str, Any]
) -> None:
    [last] = judge(system, "org-audit", 1)
    proof_of(system, last)  # checkpointed: every decision so far is under a signature
    verified = carveout(system, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
    again = carveout(system, "audit", "verify", "--from-log", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    checks = {c["check"] for c in json.loads(again.stdout)["checks"]}
    assert any(c.startswith("carveout.decisions/") and "rebuilt" in c for c in checks)
    assert "carveout.grants completeness" in checks

    target = proof_of(system, last)
    store = sqlite3.connect(system.var_dir / "enforcement.db")
    with store:
        store.execute(
            "UPDATE decisions SET decision = 'deny' WHERE access_event_id = ?",
            (last,),
        )
    failed = carveout(system, "audit", "verify", "--from-log", "--json")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    named = f"{target['log']}: leaf {target['leaf_index']} (access event {last}) differs"
    problems = [c["detail"] for c in json.loads(failed.stdout)["checks"] if not c["ok"]]
    assert any(p.startswith(named) for p in problems), problems
    shown = carveout(system, "audit", "verify", "--from-log")
    assert shown.returncode == 1 and "FAILED" in shown.stdout

    with store:
        store.execute("DELETE FROM decisions WHERE access_event_id = ?", (last,))
    failed = carveout(system, "audit", "verify", "--from-log", "--json")
    assert failed.returncode == 1
    problems = [c["detail"] for c in json.loads(failed.stdout)["checks"] if not c["ok"]]
    named = f"{target['log']}: leaf {target['leaf_index']} is missing from the store"
    assert any(p.startswith(named) for p in problems), problems
    store.close()


def test_an_evidence_file_verifies_offline_and_not_once_tampered_with(
    system: System, grant: dict[str, Any], tmp_path: Path
) -> None:
    grant_id = grant["grant_id"]
    suspended = system.call(
        "grant", "POST", f"/v1/grants/{grant_id}/suspend", json={"reason": "audit"}
    )
    assert suspended.status_code == 200
    out = tmp_path / "evidence.json"
    exported = carveout(system, "audit", "export", "--grant", grant_id, "--out", str(out))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    evidence = json.loads(out.read_text())
    assert len(evidence["grant_events"]) == 2
    assert len(evidence["breaches"]) == 2

    offline = {**system.env(), "CARVEOUT_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    checked = subprocess.run(
        [sys.executable, "-m", "carveout_ops", "audit", "verify", str(out), "--json"],
        env={**offline, **{f"CARVEOUT_{s}_PORT": "1" for s in ("GRANT", "ENFORCEMENT")}},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["ok"] is True

    assert tampering_is_named(json.loads(out.read_text()), system) == []

    tampered = json.loads(out.read_text())
    breach = json.loads(tampered["breaches"][0]["value"])
    breach["data"]["severity"] = "warning"
    tampered["breaches"][0]["value"] = json.dumps(breach)
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(tampered))
    refused = carveout(system, "audit", "verify", str(bad), "--json")
    assert refused.returncode == 1
    [failure] = [c for c in json.loads(refused.stdout)["checks"] if not c["ok"]]
    assert failure["check"].startswith("breaches[0]") and "signature" in failure["detail"]

    tampered = json.loads(out.read_text())
    tampered["grant_events"][1]["proof"]["inclusion"].reverse()
    tampered["grant_events"][1]["proof"]["inclusion"].append(base64.b64encode(bytes(32)).decode())
    bad.write_text(json.dumps(tampered))
    refused = carveout(system, "audit", "verify", str(bad), "--json")
    assert refused.returncode == 1
    [failure] = [c for c in json.loads(refused.stdout)["checks"] if not c["ok"]]
    assert failure["check"].startswith("grant_events[1]")

    bad.write_text('{"format": "carveout-evidence/1", "grant_id": 5}')
    refused = carveout(system, "audit", "verify", str(bad))
    assert refused.returncode == 1
    said = " ".join(refused.stderr.split())
    assert "is not a Carveout evidence file: grant_id: Input should be a valid string" in said


def tampering_is_named(original: dict[str, Any], system: System) -> list[str]:
    """Change each part of an evidence file in turn: each change fails, naming the part.
    Returns what the untouched file fails (nothing)."""
    trusted = load_trusted_keys(system.var_dir / "keys" / "trusted-keys.json")

    def failing(document: dict[str, Any]) -> list[str]:
        findings = verify_evidence(Evidence.model_validate(document), trusted)
        return [f"{f.check}: {f.detail}" for f in findings.failures()]

    def changed(edit: Any) -> dict[str, Any]:
        document = json.loads(json.dumps(original))
        edit(document)
        return document

    other_key = base64.b64encode(bytes(range(32))).decode()
    cases: dict[str, Any] = {
        "grant_events[0]": lambda d: d.update(grant_id="grt_another"),
        "checkpoints[0]": lambda d: d["checkpoints"].__setitem__(
            0, d["checkpoints"][0].replace("\n", "\n\n", 1)
        ),
        "keys.enforcement[0]": lambda d: d["keys"]["enforcement"][0].update(public_key=other_key),
        "breaches[1]": lambda d: d["breaches"][1]["decision"].update(
            leaf=d["breaches"][1]["decision"]["leaf"].replace('"deny"', '"allow"')
        ),
        "grant_events[1]": lambda d: d["grant_events"][1].update(
            signature=d["grant_events"][0]["signature"]
        ),
    }
    if original["acknowledgements"]:
        cases["acknowledgements[0]"] = lambda d: d["acknowledgements"][0].update(
            value=d["acknowledgements"][0]["value"].replace('"version":1', '"version":3')
        )
    for part, edit in cases.items():
        found = failing(changed(edit))
        assert any(f.startswith(part) for f in found), (part, found)
    return failing(original)
