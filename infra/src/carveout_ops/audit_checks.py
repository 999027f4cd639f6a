"""What ``carveout audit verify`` checks against the running services (DESIGN §12), without
trusting their stores: the public keys they serve against the trusted-keys file, every
checkpoint's signature, and that each log only grew since the checkpoint this auditor
verified last (kept in a witness file, as a witness does).

Everything read from a service or a file is bounded and checked before use; a problem
that stops the audit (no token, a service that does not answer, an answer of the wrong
shape) is an :class:`AuditError`, and each check's outcome a :class:`Finding`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from carveout_runtime.auth import MissingTokens, Role, TokenBook
from carveout_runtime.event_signing import NOTE_KEY_NAMES
from carveout_runtime.merkle import verify_consistency
from carveout_runtime.notes import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from carveout_runtime.signing import TrustedKey, TrustedKeys

from .system import address, tokens_file, var_dir

MAX_ANSWER_BYTES = 32 * 1024 * 1024
MAX_WITNESS_BYTES = 4 * 1024 * 1024
GRANTS_LOG = "carveout.grants"
DECISIONS_PREFIX = "carveout.decisions/"
LOG_SERVICES = ("grant", "enforcement")
"""The services that keep transparency logs."""


class AuditError(Exception):
    """What stops an audit before it can check anything more, said plainly."""


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str


@dataclass
class Findings:
    """Every check an audit made, and how it came out."""

    items: list[Finding] = field(default_factory=list)

    def add(self, check: str, ok: bool, detail: str) -> bool:
        self.items.append(Finding(check, ok, detail))
        return ok

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)

    def failures(self) -> list[Finding]:
        return [item for item in self.items if not item.ok]

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [{"check": f.check, "ok": f.ok, "detail": f.detail} for f in self.items],
        }


def count_leaves(count: int) -> str:
    return "1 leaf" if count == 1 else f"{count:,} leaves"


def owner_of(log: str) -> str | None:
    """The service whose log ``log`` is."""
    if log == GRANTS_LOG:
        return "grant"
    if log.startswith(DECISIONS_PREFIX):
        return "enforcement"
    return None


def decode_b64(text: Any) -> bytes | None:
    if not isinstance(text, str) or len(text) > 1024:
        return None
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return None


def auditor_token() -> str:
    """The auditor's token: ``CARVEOUT_AUDITOR_TOKEN``, else the tokens file's."""
    token = os.environ.get("CARVEOUT_AUDITOR_TOKEN")
    if token:
        return token
    path = tokens_file()
    try:
        return TokenBook.read(path).tokens[Role.AUDITOR]
    except (MissingTokens, OSError) as exc:
        raise AuditError(
            f"no auditor token: set CARVEOUT_AUDITOR_TOKEN or give {path} ({exc})"
        ) from None


@dataclass
class Services:
    """The services' HTTP APIs, read as an auditor."""

    token: str
    timeout_s: float = 10.0

    def answer(
        self, service: str, path: str, params: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """The status and JSON answer of ``GET path`` (at most ``MAX_ANSWER_BYTES``)."""
        url = address(service).url + path
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            with httpx.stream(
                "GET", url, params=params, headers=headers, timeout=self.timeout_s
            ) as answer:
                body = bytearray()
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise AuditError(f"{service}: {path} answered over {MAX_ANSWER_BYTES} B")
        except httpx.HTTPError as exc:
            raise AuditError(f"the {service} service at {url} did not answer: {exc}") from None
        try:
            return answer.status_code, json.loads(body)
        except ValueError:
            raise AuditError(f"{service}: {path} answered {answer.status_code}, not JSON") from None

    def get(self, service: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """The JSON answer of ``GET path``; ``None`` for a 404, an error for another."""
        status, payload = self.answer(service, path, params)
        if status == 404:
            return None
        if status != 200:
            message = payload.get("message") if isinstance(payload, dict) else payload
            raise AuditError(f"{service}: GET {path} -> {status}: {message}")
        return payload


def note_verifiers(trusted: TrustedKeys, service: str) -> list[NoteVerifier]:
    """The keys that may sign ``service``'s checkpoints: every trusted key of it, old ones
    included (a rotated key still verifies what it signed)."""
    name = NOTE_KEY_NAMES.get(service)
    if name is None:
        return []
    return [NoteVerifier(name, key.public_key) for key in trusted.of_service(service)]


def check_served_keys(
    findings: Findings, services: Services, trusted: TrustedKeys, names: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each service's ``GET /v1/keys``, every key of it trusted and its note verifier key
    that of its key; returns the keys as served."""
    served: dict[str, list[dict[str, Any]]] = {}
    for service in names:
        answer = services.get(service, "/v1/keys")
        keys = answer.get("keys") if isinstance(answer, dict) else None
        if not isinstance(keys, list) or not keys or len(keys) > 1000:
            findings.add(f"{service} keys", False, "GET /v1/keys gave no list of keys")
            continue
        served[service] = keys
        problems = [p for key in keys if (p := _served_key_problem(key, service, trusted))]
        findings.add(
            f"{service} keys",
            not problems,
            "; ".join(problems) or f"{len(keys)} served, each in the trusted-keys file",
        )
    return served


def _served_key_problem(key: Any, service: str, trusted: TrustedKeys) -> str | None:
    if not isinstance(key, dict):
        return "a key that is not an object"
    raw = decode_b64(key.get("public_key"))
    kid = key.get("kid")
    if raw is None or len(raw) != 32 or not isinstance(kid, str):
        return f"key {str(kid)[:20]!r} is not a kid and a 32-byte public key"
    if TrustedKey.of(service, raw) not in trusted.of_service(service):
        return f"kid {kid[:20]} is not a key of {service} in the trusted-keys file"
    name = NOTE_KEY_NAMES.get(service)
    if name is not None and key.get("note_verifier_key") != NoteVerifier(name, raw).vkey():
        return f"kid {kid[:20]}'s note verifier key is not that of its public key"
    return None


@dataclass(frozen=True)
class Seen:
    """A verified checkpoint: the log's size and root, and the signed note saying so."""

    log: str
    size: int
    root: bytes
    note: str

    def as_json(self) -> dict[str, Any]:
        return {"size": self.size, "root": base64.b64encode(self.root).decode(), "note": self.note}


def open_signed(note: Any, log: str, trusted: TrustedKeys) -> Checkpoint:
    """The checkpoint of ``log`` in ``note``, signed by a trusted key of the log's service
    (``NoteError`` saying what is wrong)."""
    service = owner_of(log)
    if service is None:
        raise NoteError(f"{log[:100]!r} is no Carveout log")
    if not isinstance(note, str):
        raise NoteError("the checkpoint is not a note")
    return open_checkpoint(note, note_verifiers(trusted, service), origin=log)


def check_checkpoints(
    findings: Findings, services: Services, trusted: TrustedKeys
) -> dict[str, Seen]:
    """Every service's latest checkpoints, each signature verified; those that verify."""
    verified: dict[str, Seen] = {}
    for service in LOG_SERVICES:
        answer = services.get(service, "/v1/checkpoints")
        listed = answer.get("checkpoints") if isinstance(answer, dict) else None
        if not isinstance(listed, list):
            findings.add(f"{service} checkpoints", False, "GET /v1/checkpoints gave no list")
            continue
        if not listed:
            findings.add(f"{service} checkpoints", True, "none signed yet (no log has grown)")
        for entry in listed[:100_000]:
            log = entry.get("log") if isinstance(entry, dict) else None
            if not isinstance(log, str) or owner_of(log) != service:
                findings.add(f"{service} checkpoints", False, f"a checkpoint of {log!r}")
                continue
            try:
                checkpoint = open_signed(entry.get("note"), log, trusted)
            except NoteError as exc:
                findings.add(f"{log} checkpoint", False, f"signature: {exc}")
                continue
            claimed = (entry.get("size"), decode_b64(entry.get("root")))
            if claimed != (checkpoint.size, checkpoint.root):
                findings.add(f"{log} checkpoint", False, "size or root differs from its note")
                continue
            verified[log] = Seen(log, checkpoint.size, checkpoint.root, entry["note"])
            findings.add(f"{log} checkpoint", True, f"size {checkpoint.size}, signed by {service}")
    return verified


def witness_path() -> Path:
    return var_dir() / "audit" / "witness.json"


def load_witness(path: Path, trusted: TrustedKeys) -> dict[str, Seen]:
    """The checkpoints verified last time, each verified again (a witness file is read like
    anything else: bounded, and refused whole when it is not what this command writes)."""
    if not path.exists():
        return {}
    try:
        with path.open("rb") as file:
            data = file.read(MAX_WITNESS_BYTES + 1)
        if len(data) > MAX_WITNESS_BYTES:
            raise ValueError(f"it is over {MAX_WITNESS_BYTES} bytes")
        document = json.loads(data)
        logs = document["logs"]
        if not isinstance(logs, dict):
            raise ValueError('"logs" is not an object')
        seen = {}
        for log, entry in logs.items():
            checkpoint = open_signed(entry["note"], log, trusted)
            seen[log] = Seen(log, checkpoint.size, checkpoint.root, entry["note"])
        return seen
    except (OSError, ValueError, KeyError, TypeError, NoteError) as exc:
        raise AuditError(
            f"the witness file {path} cannot be used ({exc}); move it away to start a new one"
        ) from None


def save_witness(path: Path, seen: dict[str, Seen]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"logs": {log: entry.as_json() for log, entry in sorted(seen.items())}}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(path)


def check_growth(
    findings: Findings, services: Services, before: dict[str, Seen], now: dict[str, Seen]
) -> set[str]:
    """For each log the witness saw, that the latest checkpoint extends it (RFC 6962
    consistency proof from the service); the logs that check out."""
    grown = set()
    for log, old in sorted(before.items()):
        new = now.get(log)
        what = f"{log} consistency"
        if new is None:
            findings.add(
                what, False, f"no verified checkpoint now; the witness saw size {old.size}"
            )
        elif new.size < old.size:
            findings.add(what, False, f"shrank from {old.size} to {new.size} leaves")
        elif new.size == old.size:
            same = new.root == old.root
            detail = "another root: a fork"
            if same:
                detail = f"still {count_leaves(old.size)}, the same root"
            if findings.add(what, same, detail):
                grown.add(log)
        else:
            service = owner_of(log) or ""
            params = {"log": log, "from": old.size, "to": new.size}
            answer = services.get(service, "/v1/checkpoints/consistency", params)
            proof = [decode_b64(h) for h in (answer or {}).get("proof", [])][:200]
            hashes = [h for h in proof if h is not None]
            ok = len(hashes) == len(proof) and verify_consistency(
                old.size, new.size, old.root, new.root, hashes
            )
            detail = (
                f"grew from {old.size} to {new.size} leaves, the old tree kept whole"
                if ok
                else f"no valid proof that size {new.size} extends size {old.size}: a fork"
            )
            if findings.add(what, ok, detail):
                grown.add(log)
    for log in sorted(set(now) - set(before)):
        grown.add(log)
    return grown
