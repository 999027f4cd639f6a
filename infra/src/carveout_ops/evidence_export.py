"""Gathering one grant's evidence file (:mod:`.evidence`) from the topics and the services.

Records are taken from the topics as published, with their signature headers, and kept
only when their service's trusted key signed them; proofs come from the services, and are
waited for a few seconds when the record is newer than the latest checkpoint (signed
every second)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

from carveout_contracts import (
    ConditionBreached,
    EnforcementApplied,
    affected_grants,
    codec,
    topics,
)
from carveout_runtime.logread import read_all
from carveout_runtime.notes import Checkpoint, parse_note
from carveout_runtime.signing import SIGNATURE_HEADER, TrustedKeys

from .audit_checks import AuditError, Findings, Services, check_served_keys, owner_of
from .evidence import FORMAT, SERVICES, distinct, keys_section

Progress = Callable[[str, int, int], None]
PROOF_WAIT_S = 5.0
"""How long a proof of a record newer than the latest checkpoint is waited for."""
SIGNED_BY = {
    topics.GRANTS: "grant",
    topics.BREACHES: "enforcement",
    topics.NOTIFICATIONS: "notification",
    topics.ACKS: "enforcement",
}


def _header(record: Any) -> str | None:
    for name, value in record.headers or ():
        if name.lower() == SIGNATURE_HEADER:
            return bytes(value).decode("latin-1")
    return None


KEYED_BY_GRANT = frozenset({topics.BREACHES, topics.ACKS})
"""Topics whose records of one grant all carry its id as their key: the others are skipped
unread (a grant's events are read whole: a carveout's revocation is keyed by its first
grant; notifications are keyed by subscription)."""


def signed_events(
    records: Iterable[Any], trusted: TrustedKeys, grant_id: str
) -> dict[str, list[tuple[Any, dict[str, str]]]]:
    """Each topic's validly signed, readable events that may be of ``grant_id`` (each event
    once), with the record as published: its value as text and its signature header."""
    found: dict[str, list[tuple[Any, dict[str, str]]]] = {topic: [] for topic in SIGNED_BY}
    seen: set[str] = set()
    key = grant_id.encode()
    for record in records:
        if record.topic in KEYED_BY_GRANT and record.key != key:
            continue
        value = record.value or b""
        header = _header(record)
        service = SIGNED_BY.get(record.topic)
        if service is None or header is None:
            continue
        if not trusted.verify(value, header, service=service).ok:
            continue  # records without a valid signature are part of no log
        try:
            event = codec.decode(record.topic, value)
            text = value.decode()
        except Exception:
            continue
        if str(event.event_id) in seen:
            continue  # published again (a relay restarted): the first stands
        seen.add(str(event.event_id))
        found[record.topic].append((event, {"value": text, "signature": header}))
    return found


def _proof(services: Services, service: str, path: str) -> dict[str, Any]:
    """A proof route's answer, waiting while the record is not checkpointed yet."""
    deadline = time.monotonic() + PROOF_WAIT_S
    while True:
        status, answer = services.answer(service, path)
        if status == 200 and isinstance(answer, dict):
            return answer
        error = answer.get("error") if isinstance(answer, dict) else None
        if error != "not_checkpointed" or time.monotonic() > deadline:
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise AuditError(f"{service}: GET {path} -> {status}: {message}")
        time.sleep(0.25)


def _leaf_proof(answer: dict[str, Any], checkpoints: list[str]) -> dict[str, Any]:
    checkpoints.append(str(answer.get("checkpoint")))
    return {
        name: answer.get(name) for name in ("log", "leaf_index", "tree_size", "leaf", "inclusion")
    }


async def gather(
    grant_id: str,
    bootstrap: str,
    services: Services,
    trusted: TrustedKeys,
    progress: Progress,
) -> dict[str, Any]:
    """The evidence document of ``grant_id``."""
    findings = Findings()
    served = check_served_keys(findings, services, trusted, SERVICES)
    if not findings.ok:
        raise AuditError("; ".join(f.detail for f in findings.failures()))
    records = await read_all(
        bootstrap, list(SIGNED_BY), lambda done, total: progress("topics", done, total)
    )
    found = signed_events(records, trusted, grant_id)
    del records  # what may be of the grant is kept; the rest need not stay in memory
    checkpoints: list[str] = []
    grant_events = []
    events: set[str] = set()
    for event, record in found[topics.GRANTS]:
        if grant_id in affected_grants(event):
            events.add(str(event.event_id))
            path = f"/v1/grants/{grant_id}/events/{event.event_id}/proof"
            proof = _leaf_proof(_proof(services, "grant", path), checkpoints)
            grant_events.append({**record, "proof": proof})
            progress("proofs", len(grant_events), len(grant_events))
    if not grant_events:
        raise AuditError(
            f"no event of grant {grant_id!r} signed by the grant service is on the log"
        )
    breaches = []
    for event, record in found[topics.BREACHES]:
        if isinstance(event, ConditionBreached) and event.data.grant_id == grant_id:
            path = f"/v1/decisions/{event.data.access_event_id}/proof"
            decision = _leaf_proof(_proof(services, "enforcement", path), checkpoints)
            breaches.append({**record, "decision": decision})
            events.add(str(event.event_id))
            progress("proofs", len(grant_events) + len(breaches), len(grant_events) + len(breaches))
    told = [
        record
        for event, record in found[topics.NOTIFICATIONS]
        if str(event.data.source_event_id) in events
    ]
    acknowledged = [
        record
        for event, record in found[topics.ACKS]
        if isinstance(event, EnforcementApplied) and event.data.grant_id == grant_id
    ]
    notes = distinct(checkpoints)
    return {
        "format": FORMAT,
        "grant_id": grant_id,
        "keys": keys_section(served),
        "checkpoints": notes,
        "consistency": _consistency(services, notes),
        "grant_events": grant_events,
        "breaches": breaches,
        "notifications": told,
        "acknowledgements": acknowledged,
    }


def _consistency(services: Services, notes: list[str]) -> list[dict[str, Any]]:
    """Between each two successive checkpoints of one log in the file, the proof that the
    later extends the earlier: the file's checkpoints are one history of each log."""
    sizes: dict[str, set[int]] = {}
    for note in notes:
        checkpoint = Checkpoint.parse(parse_note(note).text)
        sizes.setdefault(checkpoint.origin, set()).add(checkpoint.size)
    steps = []
    for log, known in sorted(sizes.items()):
        ordered = sorted(known)
        for old, new in itertools.pairwise(ordered):
            params = {"log": log, "from": old, "to": new}
            answer = services.get(owner_of(log) or "", "/v1/checkpoints/consistency", params)
            proof = answer.get("proof") if isinstance(answer, dict) else None
            if not isinstance(proof, list):
                raise AuditError(f"no consistency proof of {log} from {old} to {new}")
            steps.append({"log": log, "from_size": old, "to_size": new, "proof": proof})
    return steps
