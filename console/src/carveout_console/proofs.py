"""A decision's proof, checked as an auditor would (DESIGN §12): the checkpoint signed by
enforcement's key (one the trusted-keys file lists, when the console has it), the leaf
folded with its inclusion path giving the checkpoint's root, and what the leaf says.
The hashing and the signed notes are the runtime's own."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carveout_runtime.event_signing import NOTE_KEY_NAMES
from carveout_runtime.keyfiles import load_trusted_keys
from carveout_runtime.merkle import leaf_hash, verify_inclusion
from carveout_runtime.notes import NoteError, NoteVerifier, open_checkpoint
from carveout_runtime.signing import KeyFileError, TrustedKey

SERVICE = "enforcement"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class ProofReport:
    """What was checked of one decision's proof, each check with its outcome."""

    proof: dict[str, Any]
    leaf: dict[str, Any] | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)


def _b64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class ProofChecker:
    def __init__(self, trusted_keys: Path | None) -> None:
        self.trusted_keys = trusted_keys

    def _verifiers(self, served: list[Any], report: ProofReport) -> list[NoteVerifier]:
        """Enforcement's served keys, each as a note verifier; with a trusted-keys file,
        only the keys it lists count."""
        trusted = None
        if self.trusted_keys is not None:
            try:
                trusted = load_trusted_keys(self.trusted_keys).of_service(SERVICE)
            except (OSError, KeyFileError) as exc:
                report.checks.append(Check("trusted keys", False, str(exc)))
                return []
        verifiers = []
        for key in served:
            raw = _b64(key.get("public_key")) if isinstance(key, dict) else None
            if raw is None or len(raw) != 32:
                continue
            if trusted is not None and TrustedKey.of(SERVICE, raw) not in trusted:
                continue
            verifiers.append(NoteVerifier(NOTE_KEY_NAMES[SERVICE], raw))
        where = "listed in the trusted-keys file" if trusted is not None else "served"
        report.checks.append(
            Check(
                "enforcement's key",
                bool(verifiers),
                f"{len(verifiers)} key(s) {where}"
                if verifiers
                else "no key of enforcement's is in the trusted-keys file",
            )
        )
        return verifiers

    def check(self, proof: dict[str, Any], served_keys: list[Any]) -> ProofReport:
        report = ProofReport(proof)
        verifiers = self._verifiers(served_keys, report)
        log = str(proof.get("log", ""))
        try:
            checkpoint = open_checkpoint(str(proof.get("checkpoint", "")), verifiers, origin=log)
        except NoteError as exc:
            report.checks.append(Check("checkpoint signature", False, str(exc)))
            return report
        report.checks.append(
            Check(
                "checkpoint signature",
                True,
                f"{log} at size {checkpoint.size}, signed by {NOTE_KEY_NAMES[SERVICE]}",
            )
        )
        leaf_text = proof.get("leaf")
        path = [_b64(h) for h in proof.get("inclusion") or []]
        index = proof.get("leaf_index")
        if not isinstance(leaf_text, str) or not isinstance(index, int) or None in path:
            report.checks.append(Check("inclusion", False, "the proof is not well formed"))
            return report
        included = verify_inclusion(
            leaf_hash(leaf_text.encode()),
            index,
            checkpoint.size,
            [h for h in path if h is not None],
            checkpoint.root,
        )
        report.checks.append(
            Check(
                "inclusion",
                included,
                f"leaf {index} with {len(path)} hash(es) gives the signed root"
                if included
                else f"leaf {index} and its path do not give the signed root",
            )
        )
        try:
            leaf = json.loads(leaf_text)
        except json.JSONDecodeError:
            leaf = None
        report.leaf = leaf if isinstance(leaf, dict) else None
        return report
