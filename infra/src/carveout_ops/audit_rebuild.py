"""``carveout audit verify --from-log``: each transparency log rebuilt from outside the
service, leaf by leaf, and held to its signed checkpoint (DESIGN §12).

- The grant history, from ``carveout.grants``: each leaf the value of a record the grant
  service signed (records without a valid signature are part of no log), in the order
  the service's leaves give; every signed grant event must be a leaf.
- Each decision log, from the stored decisions (``GET /v1/leaves``: each leaf as its
  decision row gives it, and the leaf hash kept when it was judged), each decision held
  to its access event on the log's partition of ``carveout.access``.

A rebuilt tree must give the root each verified checkpoint signed; the first leaf that
differs is named by its log and index.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from carveout_contracts import topics
from carveout_runtime.logread import read_all
from carveout_runtime.merkle import leaf_hash
from carveout_runtime.signing import TrustedKeys
from carveout_runtime.tiles import CompactRange

from .audit_checks import (
    DECISIONS_PREFIX,
    GRANTS_LOG,
    AuditError,
    Findings,
    Seen,
    Services,
    count_leaves,
    decode_b64,
)

LEAVES_PAGE = 1000
Progress = Callable[[str, int, int], None]
ANY_SKEW_S = 10 * 365 * 86400.0
"""Accesses are looked up, not judged: any ``occurred_at`` the log holds is read."""


@dataclass(frozen=True)
class StoredLeaf:
    index: int
    entry_id: str
    leaf: str | None
    leaf_hash: bytes


def read_leaves(
    services: Services, service: str, log: str, expected: int, progress: Progress
) -> Iterator[StoredLeaf]:
    """Every leaf of ``log`` the service's store holds, read a page at a time."""
    start = read = 0
    while True:
        params = {"log": log, "start": start, "limit": LEAVES_PAGE}
        answer = services.get(service, "/v1/leaves", params)
        page = answer.get("leaves") if isinstance(answer, dict) else None
        if not isinstance(page, list) or len(page) > LEAVES_PAGE:
            raise AuditError(f"{service}: GET /v1/leaves of {log} gave no page of leaves")
        if not page:
            return
        for entry in page:
            leaf = _stored_leaf(entry, service, log)
            if leaf.index < start:  # a page that goes back would never end
                raise AuditError(f"{service}: leaf {leaf.index} of {log} came before {start}")
            start = leaf.index + 1
            yield leaf
        read += len(page)
        progress(f"leaves of {log}", read, max(expected, read))


@dataclass
class Rebuilt:
    """A log rebuilt leaf by leaf in O(log n) memory, its roots kept at the sizes wanted
    (those of signed checkpoints)."""

    wanted: set[int]
    edge: CompactRange = field(default_factory=CompactRange)
    roots: dict[int, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.edge.size

    def add(self, hashed_leaf: bytes) -> None:
        self.edge.append_hash(hashed_leaf)
        if self.edge.size in self.wanted:
            self.roots[self.edge.size] = self.edge.root()


def _stored_leaf(entry: Any, service: str, log: str) -> StoredLeaf:
    if isinstance(entry, dict):
        index, entry_id, leaf = entry.get("index"), entry.get("entry_id"), entry.get("leaf")
        hashed = decode_b64(entry.get("leaf_hash")) or b""
        if (
            isinstance(index, int)
            and index >= 0
            and isinstance(entry_id, str)
            and (leaf is None or isinstance(leaf, str))
        ):
            return StoredLeaf(index, entry_id, leaf, hashed)
    raise AuditError(f"{service}: a leaf of {log} is not an index, an id, a leaf and a hash")


def _event_id(value: bytes) -> str | None:
    try:
        return str(uuid.UUID(orjson.loads(value)["event_id"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


async def signed_grant_events(
    bootstrap: str, trusted: TrustedKeys, progress: Progress
) -> tuple[dict[str, bytes], int]:
    """The grant events on ``carveout.grants`` the grant service signed, by event id (a
    re-published one once), and how many records were not validly signed."""
    records = await read_all(bootstrap, [topics.GRANTS], lambda d, t: progress(topics.GRANTS, d, t))
    signed: dict[str, bytes] = {}
    unsigned = 0
    for record in records:
        value = record.value or b""
        if not trusted.verify_headers(value, record.headers or (), service="grant").ok:
            unsigned += 1
            continue
        event_id = _event_id(value)
        if event_id is not None:
            signed.setdefault(event_id, value)
    return signed, unsigned


def check_grant_history(
    findings: Findings,
    services: Services,
    checkpoint: Seen | None,
    signed: Mapping[str, bytes],
    progress: Progress,
) -> None:
    """The grant history rebuilt from the signed records of ``carveout.grants``."""
    expected = checkpoint.size if checkpoint else 0
    rebuilt = Rebuilt({expected})
    first: str | None = None
    done = False
    logged: set[str] = set()  # every leaf's event, for the completeness check
    for position, stored in enumerate(
        read_leaves(services, "grant", GRANTS_LOG, expected, progress)
    ):
        logged.add(stored.entry_id)
        if done:
            continue
        value = signed.get(stored.entry_id)
        what = f"leaf {position} (grant event {stored.entry_id})"
        if stored.index != position:
            first = f"leaf {position} is missing from the grant service's store"
        elif value is None and position < expected:
            first = f"{what} has no signed record on {topics.GRANTS}"
        elif value is not None and leaf_hash(value) != stored.leaf_hash:
            first = f"{what} is not the event's signed value"
        # An event recorded after the checkpoint may not be relayed yet: the rebuild stops.
        done = first is not None or value is None
        if not done and value is not None:
            rebuilt.add(leaf_hash(value))
    _judge_rebuilt(findings, GRANTS_LOG, rebuilt, checkpoint, first, None, f"from {topics.GRANTS}")
    outside = sorted(set(signed) - logged)
    findings.add(
        f"{GRANTS_LOG} completeness",
        not outside,
        f"signed grant event {outside[0]} on {topics.GRANTS} is in no log"
        if outside
        else f"every signed event on {topics.GRANTS} ({len(signed)}) is a leaf",
    )


async def accesses_by_partition(
    bootstrap: str, progress: Progress
) -> dict[int, dict[str, tuple[str, str, str]]]:
    """What each access on ``carveout.access`` says a decision must repeat (when, who,
    which model), by partition and event id, as the enforcement service reads accesses."""
    from carveout_enforcement.access import read_access, received_at
    from carveout_enforcement.decision_log import occurred_text

    records = await read_all(bootstrap, [topics.ACCESS], lambda d, t: progress(topics.ACCESS, d, t))
    found: dict[int, dict[str, tuple[str, str, str]]] = {}
    now = time.time()
    for record in records:
        try:
            access = read_access(
                record.value, received_at(record, now), max_future_skew_s=ANY_SKEW_S
            )
        except Exception:  # poison: dead-lettered live, never judged
            continue
        facts = (occurred_text(access.occurred_us), access.grantee_id, access.model_id)
        found.setdefault(record.partition, {}).setdefault(access.event_id, facts)
    return found


def _partition(log: str) -> int:
    return int(log.removeprefix(DECISIONS_PREFIX))


def check_decision_log(
    findings: Findings,
    services: Services,
    checkpoint: Seen,
    witnessed: Seen | None,
    accesses: Mapping[int, Mapping[str, tuple[str, str, str]]],
    progress: Progress,
) -> None:
    """A decision log rebuilt from the stored decisions, each held to its access event."""
    log = checkpoint.log
    partition = _partition(log)
    on_topic = accesses.get(partition, {})
    rebuilt = Rebuilt({checkpoint.size, *([witnessed.size] if witnessed else [])})
    first: str | None = None
    leaves = read_leaves(services, "enforcement", log, checkpoint.size, progress)
    for position, stored in enumerate(leaves):
        first = _decision_problem(position, stored, on_topic, partition)
        if first is not None:
            break
        rebuilt.add(stored.leaf_hash)
    source = f"from the stored decisions and {topics.ACCESS}"
    _judge_rebuilt(findings, log, rebuilt, checkpoint, first, witnessed, source)


def _decision_problem(
    position: int, stored: StoredLeaf, on_topic: Mapping[str, tuple[str, str, str]], partition: int
) -> str | None:
    what = f"leaf {position} (access event {stored.entry_id})"
    if stored.index != position:
        return f"leaf {position} is missing from the store: its decision was deleted"
    if stored.leaf is None or leaf_hash(stored.leaf.encode()) != stored.leaf_hash:
        return f"{what} differs from what was logged: its stored decision was changed"
    try:
        leaf = orjson.loads(stored.leaf)
        facts = (leaf["occurred_at"], leaf["grantee_id"], leaf["model_id"])
    except (ValueError, KeyError, TypeError):
        return f"{what} is not a decision's leaf"
    if leaf.get("access_event_id") != stored.entry_id:
        return f"{what} is the leaf of another access"
    access = on_topic.get(stored.entry_id)
    if access is None:
        return f"{what}: no such access on {topics.ACCESS} partition {partition}"
    if access != facts:
        return f"{what} says {facts}, the access event {access}"
    return None


def _judge_rebuilt(
    findings: Findings,
    log: str,
    tree: Rebuilt,
    checkpoint: Seen | None,
    first: str | None,
    witnessed: Seen | None,
    source: str,
) -> None:
    what = f"{log} rebuilt {source}"
    if first is not None and (checkpoint is None or tree.size < checkpoint.size):
        findings.add(what, False, f"{log}: {first}")
        return
    if checkpoint is None:
        findings.add(what, True, f"{count_leaves(tree.size)}, no checkpoint signed yet")
        return
    if tree.size < checkpoint.size:
        findings.add(
            what,
            False,
            f"{log}: leaf {tree.size} is missing from the store, which holds {tree.size} "
            f"leaves where {checkpoint.size} were signed",
        )
        return
    if tree.roots.get(checkpoint.size) != checkpoint.root:
        where = "at or after leaf 0"
        if witnessed is not None and tree.roots.get(witnessed.size) == witnessed.root:
            where = f"at or after leaf {witnessed.size} (the witnessed size)"
        findings.add(
            what,
            False,
            f"{log}: the leaves do not give the root signed at size {checkpoint.size}; "
            f"the first leaf that differs is {where}",
        )
        return
    later = f"; beyond the checkpoint, {first}" if first else ""
    findings.add(
        what,
        first is None,
        f"{count_leaves(tree.size)}; the root signed at size {checkpoint.size}{later}",
    )
