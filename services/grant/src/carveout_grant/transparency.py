"""The grant history log in the running service (DESIGN §12): origin ``carveout.grants``,
one leaf per grant event, the event's value bytes as the relay publishes them, in the
order the service recorded them. :func:`~.store.append_history_leaf` appends each in the
transaction recording the event; here the tree is rebuilt at start, its checkpoints are
signed every second while it grows (key name ``carveout-grant``), and it is served."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Path
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from carveout_contracts import affected_grants, codec, limits, topics
from carveout_runtime.composition import ServiceShell
from carveout_runtime.http import ApiError, KnownQueryOnly, Reader
from carveout_runtime.tlog import (
    CheckpointBook,
    LeafEntry,
    TransparencyLogs,
    readable_leaf_hashes,
)
from carveout_runtime.tlog_api import (
    LOG_ERRORS,
    InclusionProof,
    LogsOf,
    inclusion_proof,
    transparency_router,
)

from .settings import GrantSettings
from .store import GrantCheckpoint, GrantEventRecord, GrantLogLeaf, GrantStore, append_history_leaf

ORIGIN: Final = "carveout.grants"
SERVICE = "grant"


def _hash(text: str) -> bytes | None:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


class GrantHistory:
    """The grant history log as the store keeps it (a ``LeafSource``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def log_names(self) -> list[str]:
        return [ORIGIN]

    def leaf_hashes(self, log: str, start: int, limit: int) -> list[tuple[int, bytes]]:
        if log != ORIGIN:
            return []
        query = (
            select(GrantLogLeaf.leaf_index, GrantLogLeaf.leaf_hash)
            .where(col(GrantLogLeaf.leaf_index) >= start)
            .order_by(col(GrantLogLeaf.leaf_index))
            .limit(limit)
        )
        return readable_leaf_hashes(self.engine, query, _hash)

    def leaves(self, log: str, start: int, limit: int) -> list[LeafEntry]:
        if log != ORIGIN:
            return []
        query = (
            select(GrantLogLeaf, GrantEventRecord.payload)
            .join(
                GrantEventRecord,
                col(GrantEventRecord.event_id) == col(GrantLogLeaf.event_id),
                isouter=True,
            )
            .where(col(GrantLogLeaf.leaf_index) >= start)
            .order_by(col(GrantLogLeaf.leaf_index))
            .limit(limit)
        )
        with Session(self.engine) as session:
            rows = session.exec(query).all()
        return [
            LeafEntry(leaf.leaf_index, leaf.event_id, payload, _hash(leaf.leaf_hash) or b"")
            for leaf, payload in rows
        ]

    def of_event(self, event_id: str) -> tuple[int, str] | None:
        """An event's leaf index and its value, if it is in the log."""
        query = (
            select(GrantLogLeaf.leaf_index, GrantEventRecord.payload)
            .join(GrantEventRecord, col(GrantEventRecord.event_id) == col(GrantLogLeaf.event_id))
            .where(GrantLogLeaf.event_id == event_id)
        )
        with Session(self.engine) as session:
            found = session.exec(query).first()
        return (int(found[0]), found[1]) if found is not None else None

    def log_the_unlogged(self) -> int:
        """Append, in the order they were recorded, the events a store made before the
        grant history was kept; returns how many."""
        logged = select(GrantLogLeaf.event_id)
        query = (
            select(GrantEventRecord)
            .where(col(GrantEventRecord.event_id).not_in(logged))
            .order_by(col(GrantEventRecord.seq))
        )
        with Session(self.engine) as session:
            rows = session.exec(query).all()
            for row in rows:
                append_history_leaf(session, row.event_id, row.payload)
                session.flush()
            session.commit()
        return len(rows)


def install(shell: ServiceShell, store: GrantStore, settings: GrantSettings) -> LogsOf:
    """Rebuild the grant history from the store, sign its checkpoints in the background and
    serve it."""
    history = GrantHistory(store.engine)
    history.log_the_unlogged()
    logs = TransparencyLogs(history, names=[ORIGIN])
    logs.load()
    book = CheckpointBook(store.engine, GrantCheckpoint)
    of = LogsOf(logs, book)
    shell.sign_checkpoints(logs, book, settings.checkpoint_interval_seconds)
    shell.routers += [transparency_router(of), grant_event_proof_router(of, history)]
    return of


Id = Annotated[str, Path(min_length=1, max_length=limits.MAX_ID)]


def grant_event_proof_router(of: LogsOf, history: GrantHistory) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["transparency log"], dependencies=[KnownQueryOnly])

    @router.get(
        "/grants/{grant_id}/events/{event_id}/proof",
        response_model=InclusionProof,
        responses=LOG_ERRORS,
    )
    async def grant_event_proof(grant_id: Id, event_id: Id, _: Reader) -> InclusionProof:
        """A grant event as a leaf of the grant history log (`carveout.grants`), with the
        RFC 6962 inclusion proof against the latest signed checkpoint covering it: `leaf`
        is the event's value as published on `carveout.grants` (hash its UTF-8 bytes,
        SHA-256 of 0x00 and them), and the grant service's key (`GET /v1/keys`,
        `note_verifier_key`) verifies `checkpoint`."""
        found = history.of_event(event_id)
        if found is None:
            raise ApiError(404, "not_found", f"no grant event {event_id!r} in the grant history")
        index, payload = found
        if grant_id not in affected_grants(codec.decode(topics.GRANTS, payload.encode())):
            raise ApiError(404, "not_found", f"grant event {event_id} does not concern {grant_id}")
        return inclusion_proof(of, ORIGIN, index, payload, f"grant event {event_id}")

    return router
