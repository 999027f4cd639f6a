"""The decision logs in the running service: trees rebuilt at start, checkpoints signed
every second while a log grows, and the routes that serve them (DESIGN §12)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from carveout_contracts import limits
from carveout_runtime.composition import ServiceShell
from carveout_runtime.http import ApiError, KnownQueryOnly, Reader
from carveout_runtime.tlog import CheckpointBook, TransparencyLogs
from carveout_runtime.tlog_api import (
    LOG_ERRORS,
    InclusionProof,
    LogsOf,
    inclusion_proof,
    transparency_router,
)

from .decision_log import DecisionLeaves, DecisionLog, decision_leaf, origin
from .settings import EnforcementSettings
from .store import DecisionCheckpoint, EnforcementStore

SERVICE = "enforcement"


def install(
    shell: ServiceShell, store: EnforcementStore, settings: EnforcementSettings
) -> DecisionLog | None:
    """Rebuild the decision logs from the store, sign their checkpoints in the background,
    serve them; the :class:`DecisionLog` the access pipeline appends to, or ``None`` when
    the log is off (``CARVEOUT_ENFORCEMENT_DECISION_LOG=false``)."""
    leaves = DecisionLeaves(store.engine)
    logs = TransparencyLogs(leaves)
    book = CheckpointBook(store.engine, DecisionCheckpoint)
    of = LogsOf(logs, book)
    shell.routers += [transparency_router(of), decision_proof_router(of, leaves)]
    if not settings.decision_log:
        return None
    logs.load()
    shell.sign_checkpoints(logs, book, settings.checkpoint_interval_seconds)
    return DecisionLog(logs)


AccessEventId = Annotated[str, Path(min_length=1, max_length=limits.MAX_ID)]


def decision_proof_router(of: LogsOf, leaves: DecisionLeaves) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["transparency log"], dependencies=[KnownQueryOnly])

    @router.get(
        "/decisions/{access_event_id}/proof", response_model=InclusionProof, responses=LOG_ERRORS
    )
    async def decision_proof(access_event_id: AccessEventId, _: Reader) -> InclusionProof:
        """The decision on an access as a leaf of its partition's decision log, with the
        RFC 6962 inclusion proof against the latest signed checkpoint covering it: hash
        `leaf` (SHA-256 of 0x00 and its UTF-8 bytes), fold `inclusion` up to `tree_size`,
        and compare with the root in `checkpoint`, whose signature enforcement's key
        (`GET /v1/keys`, `note_verifier_key`) verifies."""
        row = leaves.of_access(access_event_id)
        if row is None:
            raise ApiError(404, "not_found", f"no decision on access event {access_event_id!r}")
        if row.log_partition is None or row.leaf_index is None:
            raise ApiError(
                404,
                "not_logged",
                f"the decision on access event {access_event_id!r} was judged with the "
                "decision log off (CARVEOUT_ENFORCEMENT_DECISION_LOG=false): it has no leaf",
            )
        return inclusion_proof(
            of,
            origin(row.log_partition),
            row.leaf_index,
            decision_leaf(row).decode(),
            f"the decision on access event {access_event_id}",
        )

    return router
