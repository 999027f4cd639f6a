"""The HTTP routes of a service's transparency logs (DESIGN §12), for regulators and
auditors: signed checkpoints, consistency proofs between two sizes of a log, the leaves
themselves (what an audit rebuilds a tree from), and the inclusion proof a service's own
route gives for one of its records (:func:`inclusion_proof`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from .http import ApiError, KnownQueryOnly, Reader
from .tiles import LeavesUnavailable
from .tlog import MAX_LOG_NAME_CHARS, CheckpointBook, TransparencyLogs, b64

MAX_TREE_SIZE = 2**63 - 1
"""Sizes and indexes a query may name: what every store's 64-bit integers hold."""
MAX_LEAVES_PAGE = 1000

LogName = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_LOG_NAME_CHARS,
        description="The log's origin: `carveout.decisions/<partition>` or `carveout.grants`.",
    ),
]
TreeSize = Annotated[int, Query(ge=0, le=MAX_TREE_SIZE)]


class CheckpointPublic(BaseModel):
    log: str
    size: int
    root: str = Field(description="The RFC 6962 root at `size`, base64.")
    note: str = Field(description="The C2SP tlog-checkpoint as an Ed25519 signed note.")
    signed_at: str


class CheckpointList(BaseModel):
    checkpoints: list[CheckpointPublic]


class ConsistencyProof(BaseModel):
    log: str
    from_size: int = Field(alias="from")
    to_size: int = Field(alias="to")
    proof: list[str] = Field(description="RFC 6962 PROOF(from, D[to]), base64 hashes.")

    model_config = {"populate_by_name": True}


class LeafPublic(BaseModel):
    index: int
    entry_id: str = Field(
        description="What the leaf records: an access event id (decision logs) or a grant "
        "event id (the grant history)."
    )
    leaf: str | None = Field(
        description="The leaf's bytes (UTF-8 JSON text); null when the record behind it is "
        "missing from the store."
    )
    leaf_hash: str = Field(description="The leaf hash the store kept, base64.")


class LeafPage(BaseModel):
    log: str
    start: int
    leaves: list[LeafPublic]


class InclusionProof(BaseModel):
    """A record's place in its log, proven against the latest checkpoint covering it."""

    log: str
    leaf_index: int
    tree_size: int
    leaf: str = Field(description="The leaf's bytes (UTF-8 text) whose hash is proven.")
    inclusion: list[str] = Field(description="RFC 6962 PATH(leaf_index, D[tree_size]), base64.")
    checkpoint: str = Field(description="The signed note of the checkpoint at `tree_size`.")


LOG_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such log, size or leaf."},
    409: {"description": "The store lacks leaves the proof needs, or holds others."},
}


@dataclass(frozen=True)
class LogsOf:
    """A service's logs and checkpoints, as its routes read them."""

    logs: TransparencyLogs
    book: CheckpointBook


def _proven(prove: Callable[[], list[bytes]], log: str) -> list[bytes]:
    """A proof, or 409 when the leaves it needs are gone from the store or were changed:
    the log can no longer be proven there, and says so rather than proving otherwise."""
    try:
        return prove()
    except LeavesUnavailable as exc:
        raise ApiError(409, "log_damaged", f"{log}: {exc}") from None


def inclusion_proof(of: LogsOf, name: str, index: int, leaf: str, what: str) -> InclusionProof:
    """The proof of leaf ``index`` of ``name`` against the latest checkpoint of the log;
    404 (saying so) when no checkpoint covers it yet. ``what`` names the record."""
    latest = of.book.latest(name)
    if not latest or latest[0].size <= index:
        raise ApiError(
            404,
            "not_checkpointed",
            f"{what} is leaf {index} of {name}, which no signed checkpoint covers yet; "
            "checkpoints are signed every second while a log grows: try again shortly",
        )
    checkpoint = latest[0]
    tree = of.logs.at_least(name, checkpoint.size)
    if tree is None:
        raise ApiError(404, "not_found", f"{name} has fewer leaves than its checkpoint")
    path = _proven(lambda: tree.inclusion_proof(index, checkpoint.size), name)
    return InclusionProof(
        log=name,
        leaf_index=index,
        tree_size=checkpoint.size,
        leaf=leaf,
        inclusion=[b64(h) for h in path],
        checkpoint=checkpoint.note,
    )


def transparency_router(of: LogsOf) -> APIRouter:
    """``/v1/checkpoints``, ``/v1/checkpoints/consistency`` and ``/v1/leaves`` over ``of``."""
    router = APIRouter(prefix="/v1", tags=["transparency log"], dependencies=[KnownQueryOnly])

    @router.get("/checkpoints", response_model=CheckpointList, responses=LOG_ERRORS)
    async def checkpoints(
        _: Reader, log: LogName | None = None, size: TreeSize | None = None
    ) -> CheckpointList:
        """The latest signed checkpoint of each log; with `log`, of that log; with `log` and
        `size`, the one signed at that size (404 when none was)."""
        if log is None:
            if size is not None:
                raise RequestValidationError(
                    [{"type": "missing", "loc": ("query", "log"), "msg": "size needs a log"}]
                )
            found = of.book.latest()
        elif size is None:
            found = of.book.latest(log)
            if not found:
                raise ApiError(404, "not_found", f"no checkpoint of log {log!r} was signed")
        else:
            one = of.book.at(log, size)
            if one is None:
                raise ApiError(
                    404, "not_found", f"no checkpoint of log {log!r} was signed at size {size}"
                )
            found = [one]
        return CheckpointList(checkpoints=[CheckpointPublic(**c.as_json()) for c in found])

    @router.get(
        "/checkpoints/consistency",
        response_model=ConsistencyProof,
        response_model_by_alias=True,
        responses=LOG_ERRORS,
    )
    async def consistency(
        _: Reader,
        log: LogName,
        from_size: Annotated[int, Query(alias="from", ge=1, le=MAX_TREE_SIZE)],
        to_size: Annotated[int, Query(alias="to", ge=1, le=MAX_TREE_SIZE)],
    ) -> ConsistencyProof:
        """The RFC 6962 consistency proof that the log at size `to` extends it at `from`."""
        if from_size > to_size:
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("query", "from"), "msg": "from is above to"}]
            )
        tree = of.logs.at_least(log, to_size)
        if tree is None:
            raise ApiError(404, "not_found", f"log {log!r} has no tree of size {to_size}")
        proof = _proven(lambda: tree.consistency_proof(from_size, to_size), log)
        return ConsistencyProof(
            log=log, from_size=from_size, to_size=to_size, proof=[b64(h) for h in proof]
        )

    @router.get("/leaves", response_model=LeafPage, responses=LOG_ERRORS)
    async def leaves(
        _: Reader,
        log: LogName,
        start: Annotated[int, Query(ge=0, le=MAX_TREE_SIZE)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LEAVES_PAGE)] = 100,
    ) -> LeafPage:
        """The leaves of a log from index `start`, as the store keeps them: what an audit
        rebuilds the tree from and checks against the signed checkpoints."""
        if of.logs.at_least(log, 0) is None:
            raise ApiError(404, "not_found", f"no log {log!r}")
        found = of.logs.source.leaves(log, start, limit)
        return LeafPage(
            log=log,
            start=start,
            leaves=[
                LeafPublic(
                    index=leaf.index,
                    entry_id=leaf.entry_id,
                    leaf=leaf.leaf,
                    leaf_hash=b64(leaf.leaf_hash),
                )
                for leaf in found
            ],
        )

    return router
