"""The evidence file of one grant (DESIGN §12), and its checking offline.

``carveout audit export --grant ID`` gathers what proves how a grant was handled: its
signed events (each record's value and ``carveout-signature`` header, as published) with
their inclusion proofs in the grant history log; its breaches, signed by enforcement,
each with its decision's inclusion proof in its decision log; the signed notifications
of them and enforcement's signed acknowledgements of each version (its propagation); the
checkpoints the proofs are against, with consistency proofs between those of one log;
and the services' public keys. ``carveout audit verify FILE`` checks all of it with no
network: every signature, every proof, and that every part is about this grant, so that
changing any of it fails, naming the part.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from carveout_contracts import (
    ConditionBreached,
    EnforcementApplied,
    affected_grants,
    codec,
    limits,
    topics,
)
from carveout_runtime.event_signing import NOTE_KEY_NAMES
from carveout_runtime.merkle import leaf_hash, verify_consistency, verify_inclusion
from carveout_runtime.notes import Checkpoint, NoteError, NoteVerifier, open_checkpoint, parse_note
from carveout_runtime.signing import TrustedKey, TrustedKeys

from .audit_checks import GRANTS_LOG, AuditError, Findings, owner_of

FORMAT = "carveout-evidence/1"
MAX_EVIDENCE_BYTES = 256 * 1024 * 1024
MAX_ITEMS = 100_000
SERVICES = ("grant", "enforcement", "notification")

Text = Annotated[str, StringConstraints(max_length=2 * limits.DEFAULT_RECORD_BYTES)]
Short = Annotated[str, StringConstraints(max_length=limits.MAX_ID)]
Hashes = Annotated[list[Annotated[str, StringConstraints(max_length=64)]], Field(max_length=128)]
Size = Annotated[int, Field(ge=0, lt=2**63)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PublicKey(Strict):
    kid: Annotated[str, StringConstraints(max_length=16)]
    public_key: Annotated[str, StringConstraints(max_length=64)]


class LeafProof(Strict):
    """A leaf's place in a log: the checkpoint at ``tree_size`` of ``log`` is in the file."""

    log: Short
    leaf_index: Size
    tree_size: Size
    leaf: Text
    inclusion: Hashes


class SignedRecord(Strict):
    """A record as published: its value (UTF-8 JSON) and its ``carveout-signature``."""

    value: Text
    signature: Annotated[str, StringConstraints(max_length=128)]


class GrantEventEvidence(SignedRecord):
    proof: LeafProof


class BreachEvidence(SignedRecord):
    decision: LeafProof


class Consistency(Strict):
    log: Short
    from_size: Size
    to_size: Size
    proof: Hashes


class Evidence(Strict):
    format: Literal["carveout-evidence/1"]
    grant_id: Short
    keys: dict[Literal["grant", "enforcement", "notification"], list[PublicKey]]
    checkpoints: Annotated[
        list[Annotated[str, StringConstraints(max_length=16384)]], Field(max_length=MAX_ITEMS)
    ]
    consistency: Annotated[list[Consistency], Field(max_length=MAX_ITEMS)]
    grant_events: Annotated[list[GrantEventEvidence], Field(max_length=MAX_ITEMS)]
    breaches: Annotated[list[BreachEvidence], Field(max_length=MAX_ITEMS)]
    notifications: Annotated[list[SignedRecord], Field(max_length=MAX_ITEMS)]
    acknowledgements: Annotated[list[SignedRecord], Field(max_length=MAX_ITEMS)]


def read_evidence(path: Path) -> Evidence:
    """The evidence file at ``path``, read whole only when it is not too large, and refused
    with the fields at fault when it is not one."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_EVIDENCE_BYTES + 1)
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_EVIDENCE_BYTES:
        raise AuditError(f"{path} is over {MAX_EVIDENCE_BYTES} bytes: not an evidence file")
    try:
        return Evidence.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise AuditError(f"{path} is not a Carveout evidence file: {problems}") from None


def _b64(text: str) -> bytes | None:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return None


def file_keys(evidence: Evidence, findings: Findings, trusted: TrustedKeys | None) -> TrustedKeys:
    """The keys the file gives, each held to its kid and, when a trusted-keys file is at
    hand, to it; the keys that pass."""
    kept = []
    for service, keys in evidence.keys.items():
        for n, key in enumerate(keys):
            what = f"keys.{service}[{n}] (kid {key.kid})"
            raw = _b64(key.public_key)
            if raw is None or len(raw) != 32 or TrustedKey.of(service, raw).kid != key.kid:
                findings.add(what, False, "its kid is not that of its public key")
            elif trusted is not None and TrustedKey.of(service, raw) not in trusted.keys:
                findings.add(what, False, "not a key of the trusted-keys file")
            else:
                kept.append(TrustedKey.of(service, raw))
    told = "each in the trusted-keys file" if trusted else "no trusted-keys file to hold them to"
    findings.add("keys", bool(kept), f"{len(kept)} public keys; {told}")
    return TrustedKeys(kept)


def verifiers(keys: TrustedKeys, service: str) -> list[NoteVerifier]:
    return [
        NoteVerifier(NOTE_KEY_NAMES[service], key.public_key) for key in keys.of_service(service)
    ]


def check_checkpoints(
    evidence: Evidence, keys: TrustedKeys, findings: Findings
) -> dict[tuple[str, int], bytes]:
    """The file's checkpoints that verify, as (log, size) -> root."""
    roots: dict[tuple[str, int], bytes] = {}
    for n, note in enumerate(evidence.checkpoints):
        try:
            log = Checkpoint.parse(parse_note(note).text).origin
            service = owner_of(log)
            if service is None:
                raise NoteError(f"{log[:100]!r} is no Carveout log")
            checkpoint = open_checkpoint(note, verifiers(keys, service), origin=log)
        except NoteError as exc:
            findings.add(f"checkpoints[{n}]", False, str(exc))
            continue
        roots[(checkpoint.origin, checkpoint.size)] = checkpoint.root
    findings.add("checkpoints", True, f"{len(roots)} with a valid signature of their service")
    for n, step in enumerate(evidence.consistency):
        old, new = roots.get((step.log, step.from_size)), roots.get((step.log, step.to_size))
        hashes = [h for h in (_b64(x) for x in step.proof) if h is not None]
        ok = (
            old is not None
            and new is not None
            and len(hashes) == len(step.proof)
            and verify_consistency(step.from_size, step.to_size, old, new, hashes)
        )
        what = f"consistency[{n}] ({step.log} from {step.from_size} to {step.to_size})"
        findings.add(
            what, ok, "the later checkpoint extends the earlier" if ok else "does not verify"
        )
    return roots


def _proven(proof: LeafProof, leaf: bytes, roots: dict[tuple[str, int], bytes]) -> str | None:
    """Why ``proof`` does not show ``leaf`` in its log, or ``None`` when it does."""
    root = roots.get((proof.log, proof.tree_size))
    if root is None:
        return f"no verified checkpoint of {proof.log} at size {proof.tree_size} in the file"
    if proof.leaf.encode() != leaf:
        return "its leaf is not the record it proves"
    path = [h for h in (_b64(x) for x in proof.inclusion) if h is not None]
    if len(path) != len(proof.inclusion) or not verify_inclusion(
        leaf_hash(leaf), proof.leaf_index, proof.tree_size, path, root
    ):
        return f"the inclusion proof does not verify against {proof.log} at size {proof.tree_size}"
    return None


def _signed(
    record: SignedRecord, keys: TrustedKeys, service: str, topic: str
) -> tuple[Any, str | None]:
    """The record's event, and why it does not count (``None`` when it does)."""
    value = record.value.encode()
    check = keys.verify(value, record.signature, service=service)
    if not check.ok:
        return None, f"signature: {check.reason}: {check.detail}"
    try:
        return codec.decode(topic, value), None
    except Exception as exc:
        return None, f"not a {topic} event: {exc}"


def verify_evidence(evidence: Evidence, trusted: TrustedKeys | None) -> Findings:
    """Every signature and proof in ``evidence``, each part held to its grant."""
    findings = Findings()
    grant_id = evidence.grant_id
    keys = file_keys(evidence, findings, trusted)
    roots = check_checkpoints(evidence, keys, findings)
    events: set[str] = set()
    for n, item in enumerate(evidence.grant_events):
        event, problem = _signed(item, keys, "grant", topics.GRANTS)
        if event is not None:
            what = f"grant_events[{n}] ({event.type} {event.event_id})"
            if grant_id not in affected_grants(event):
                problem = f"an event of {affected_grants(event)}, not of {grant_id}"
            elif item.proof.log != GRANTS_LOG:
                problem = f"its proof is in {item.proof.log}, not {GRANTS_LOG}"
            else:
                problem = _proven(item.proof, item.value.encode(), roots)
            events.add(str(event.event_id))
        else:
            what = f"grant_events[{n}]"
        if problem:
            findings.add(what, False, problem)
    findings.add(
        "grant events",
        bool(evidence.grant_events),
        f"{len(evidence.grant_events)}, signed by the grant service, each a leaf of {GRANTS_LOG}",
    )
    breaches = _check_breaches(evidence, keys, roots, findings)
    _check_told(evidence, keys, events, breaches, findings)
    return findings


def _check_breaches(
    evidence: Evidence, keys: TrustedKeys, roots: dict[tuple[str, int], bytes], findings: Findings
) -> set[str]:
    found: set[str] = set()
    for n, item in enumerate(evidence.breaches):
        event, problem = _signed(item, keys, "enforcement", topics.BREACHES)
        what = f"breaches[{n}]"
        if isinstance(event, ConditionBreached):
            data = event.data
            what = f"breaches[{n}] ({data.breach_id})"
            found.add(str(event.event_id))
            problem = _breach_problem(evidence.grant_id, event, item.decision)
            if problem is None:
                problem = _proven(item.decision, item.decision.leaf.encode(), roots)
        if problem:
            findings.add(what, False, problem)
    findings.add(
        "breaches",
        True,
        f"{len(evidence.breaches)}, signed by enforcement, each decision a leaf of its log",
    )
    return found


def _breach_problem(grant_id: str, event: ConditionBreached, proof: LeafProof) -> str | None:
    data = event.data
    if data.grant_id != grant_id:
        return f"a breach of {data.grant_id}, not of {grant_id}"
    if owner_of(proof.log) != "enforcement":
        return f"its decision's proof is in {proof.log}, not a decision log"
    try:
        leaf = orjson.loads(proof.leaf)
        decided = (leaf["access_event_id"], leaf["grant_id"], leaf["grant_version"])
        conditions = sorted(v["condition_id"] for v in leaf["violations"])
    except (ValueError, KeyError, TypeError):
        return "its decision's leaf is not a decision"
    if decided != (str(data.access_event_id), data.grant_id, data.grant_version):
        return "its decision is of another access or grant version"
    if conditions != sorted(v.condition_id for v in data.violations):
        return "its decision names other violated conditions"
    return None


def _check_told(
    evidence: Evidence, keys: TrustedKeys, events: set[str], breaches: set[str], findings: Findings
) -> None:
    """The notifications and acknowledgements: each signed, and of an event in this file."""

    def notification_problem(event: Any) -> str | None:
        if str(event.data.source_event_id) not in events | breaches:
            return f"it tells of {event.data.source_event_id}, no event of this file"
        return None

    def acknowledgement_problem(event: Any) -> str | None:
        if not isinstance(event, EnforcementApplied):
            return f"a {event.type}, not an enforcement.applied"
        if event.data.grant_id != evidence.grant_id:
            return f"an acknowledgement of {event.data.grant_id}, not {evidence.grant_id}"
        if str(event.data.grant_event_id) not in events:
            return f"it acknowledges {event.data.grant_event_id}, no grant event here"
        return None

    check = partial(_check_signed, keys, findings)
    notifications = evidence.notifications
    check(
        "notifications", notifications, "notification", topics.NOTIFICATIONS, notification_problem
    )
    findings.add(
        "notifications",
        True,
        f"{len(notifications)}, signed by the notification service, each of an event in this file",
    )
    acks = evidence.acknowledgements
    check("acknowledgements", acks, "enforcement", topics.ACKS, acknowledgement_problem)
    findings.add(
        "propagation",
        True,
        f"{len(acks)} acknowledgements, signed by enforcement, each of a grant event in this file",
    )


def _check_signed(
    keys: TrustedKeys,
    findings: Findings,
    name: str,
    records: Sequence[SignedRecord],
    service: str,
    topic: str,
    problem_of: Callable[[Any], str | None],
) -> None:
    """A finding for each of ``records`` that is not a ``topic`` event signed by
    ``service``, or that ``problem_of`` finds wrong."""
    for n, item in enumerate(records):
        event, problem = _signed(item, keys, service, topic)
        if event is not None:
            problem = problem_of(event)
        if problem:
            findings.add(f"{name}[{n}]", False, problem)


def propagation(evidence: Evidence) -> dict[int, list[dict[str, str]]]:
    """Each version of the grant and the enforcers that acknowledged applying it, when."""
    applied: dict[int, list[dict[str, str]]] = {}
    for item in evidence.acknowledgements:
        try:
            event = codec.decode(topics.ACKS, item.value.encode())
        except Exception:
            continue
        if isinstance(event, EnforcementApplied):
            data = event.data
            applied.setdefault(data.version, []).append(
                {"enforcer_id": data.enforcer_id, "applied_at": data.applied_at.isoformat()}
            )
    return dict(sorted(applied.items()))


def write_evidence(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def keys_section(served: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, str]]]:
    return {
        service: [{"kid": k["kid"], "public_key": k["public_key"]} for k in keys]
        for service, keys in served.items()
    }


def distinct(notes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(notes))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
