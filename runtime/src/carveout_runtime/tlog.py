"""Transparency logs (DESIGN §12): append-only RFC 6962 trees of what a service recorded,
and the signed checkpoints that commit it to each tree's size and root.

A service appends a log's leaves in the same store transaction as the facts they record
(enforcement's decisions, the grant service's events), so the store and the log never
disagree. :class:`TransparencyLogs` holds each tree (its upper levels in memory: a
:class:`~.tiles.TiledLog`), built from the leaf hashes the store keeps (at start, and
whenever another replica sharing the store appended): the store is the record, the trees
are how proofs are made in O(log n).

:class:`Checkpointer` signs, at least every second while a log grows, a C2SP
``tlog-checkpoint`` as a signed note with the service's own key, stores it
(:class:`CheckpointBook`) and publishes it on ``carveout.checkpoints``.

Trees are read and changed on the service's event loop only, never from a worker thread:
the leaves a batch appends are placed once its transaction has committed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import BigInteger, Engine, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from carveout_contracts import CheckpointSigned, CheckpointSignedData, codec, topics
from carveout_contracts.common import iso_utc

from .notes import Checkpoint, NoteSigner, sign_checkpoint
from .tiles import TiledLog

log = logging.getLogger("carveout.tlog")

MAX_LOG_NAME_CHARS = 200
"""The longest log origin a query may name (``carveout.decisions/<partition>``)."""
SYNC_PAGE = 65_536
"""Leaf hashes read from the store at a time when a tree catches up."""


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class LeafEntry:
    """One leaf as the store keeps it: its index, the id of what it records, the leaf's
    bytes as text (``None`` when the record behind it is missing) and its stored hash."""

    index: int
    entry_id: str
    leaf: str | None
    leaf_hash: bytes


class LeafSource(Protocol):
    """Where a service's logs are kept: the store, read by log origin."""

    def log_names(self) -> list[str]:
        """Every log the store holds leaves of."""
        ...

    def leaf_hashes(self, log: str, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` ``(index, leaf hash)`` of ``log`` from ``start``, in index order."""
        ...

    def leaves(self, log: str, start: int, limit: int) -> list[LeafEntry]:
        """Up to ``limit`` leaves of ``log`` from index ``start``, in index order."""
        ...


def readable_leaf_hashes(
    engine: Engine, query: Any, read: Callable[[Any], bytes | None]
) -> list[tuple[int, bytes]]:
    """The ``(index, leaf hash)`` of the ``(index, stored hash)`` rows ``query`` selects,
    in its order (the index order), up to the first whose hash ``read`` cannot make out:
    the tree stops before an unreadable leaf, as before a missing one."""
    found = []
    with Session(engine) as session:
        for index, stored in session.exec(query):
            hashed = read(stored)
            if hashed is None or index is None:
                break
            found.append((int(index), hashed))
    return found


class TransparencyLogs:
    """The in-memory RFC 6962 tree of each log, kept level with the store's leaves."""

    def __init__(self, source: LeafSource, names: Iterable[str] = ()) -> None:
        """``names``: the logs the service keeps whether or not they have leaves yet."""
        self.source = source
        self._trees: dict[str, TiledLog] = {name: self._new(name) for name in names}
        self._gaps: dict[str, int] = {}

    def load(self) -> None:
        """Build every log the store holds (at start): O(log n) hashes per leaf."""
        for name in self.source.log_names():
            self.sync(name)

    def names(self) -> list[str]:
        return sorted(self._trees)

    def _new(self, name: str) -> TiledLog:
        def read(start: int, count: int) -> list[bytes]:
            found = self.source.leaf_hashes(name, start, count)
            return [hashed for index, (at, hashed) in enumerate(found, start) if at == index]

        return TiledLog(read)

    def tree(self, name: str) -> TiledLog:
        found = self._trees.get(name)
        if found is None:
            found = self._trees[name] = self._new(name)
        return found

    def size(self, name: str) -> int:
        """The leaves of ``name`` in memory (0 for a log not seen yet)."""
        found = self._trees.get(name)
        return found.size if found is not None else 0

    def sync(self, name: str) -> int:
        """Append what the store holds beyond the tree (another replica's leaves, or all
        of them at start); returns the size. A leaf missing from the store (deleted) stops
        the tree there: the log cannot be rebuilt past it, which audits report."""
        tree = self.tree(name)
        while True:
            page = self.source.leaf_hashes(name, tree.size, SYNC_PAGE)
            kept = [hashed for n, (index, hashed) in enumerate(page, tree.size) if index == n]
            tree.extend_hashes(kept)
            if len(kept) < len(page):
                if self._gaps.get(name) != tree.size:
                    self._gaps[name] = tree.size
                    log.error(
                        "log %s: the store lacks leaf %d; the tree stops there", name, tree.size
                    )
                return tree.size
            if len(page) < SYNC_PAGE:
                return tree.size

    def sync_all(self) -> None:
        """Catch up every log in memory (a log new to this replica is found by
        :meth:`load` at start, or by :meth:`at_least` when asked for)."""
        for name in list(self._trees):
            self.sync(name)

    def place(self, name: str, start: int, hashes: Sequence[bytes]) -> None:
        """Leaves ``start``, ``start + 1``... of ``name``, just committed to the store."""
        tree = self.tree(name)
        if tree.size < start:
            self.sync(name)  # someone else appended before them: the store has it all
            return
        tree.extend_hashes(hashes[tree.size - start :])

    def at_least(self, name: str, size: int) -> TiledLog | None:
        """The tree of ``name`` holding at least ``size`` leaves (caught up from the store
        when needed), or ``None`` when the log has not reached that size."""
        tree = self._trees.get(name)
        if tree is None and not self.source.leaf_hashes(name, 0, 1):
            return None  # no such log: asking for one makes no tree
        if tree is None or tree.size < size:
            self.sync(name)
            tree = self._trees[name]
        return tree if tree.size >= size else None


class CheckpointColumns(SQLModel):
    """A checkpoint a service signed: a row of its ``checkpoints`` table."""

    log: str = Field(primary_key=True)
    size: int = Field(primary_key=True, sa_type=BigInteger)
    root: str
    """The tree's root hash at ``size``, base64."""
    note: str
    """The checkpoint as a C2SP signed note."""
    signed_at: str
    published_at: str | None = Field(default=None, index=True)


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    log: str
    size: int
    root: str
    note: str
    signed_at: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class CheckpointBook:
    """A service's signed checkpoints, in its own ``checkpoints`` table."""

    def __init__(self, engine: Engine, table: type[CheckpointColumns]) -> None:
        self.engine = engine
        self.table = table

    def _of(self, row: CheckpointColumns) -> SignedCheckpoint:
        return SignedCheckpoint(row.log, row.size, row.root, row.note, row.signed_at)

    def save(self, checkpoint: SignedCheckpoint) -> bool:
        """Keep a checkpoint; ``False`` when one of that log and size is kept already
        (another replica signed it)."""
        with Session(self.engine) as session:
            if session.get(self.table, (checkpoint.log, checkpoint.size)) is not None:
                return False
            session.add(self.table(**checkpoint.as_json()))
            try:
                session.commit()
            except IntegrityError:
                return False
        return True

    def latest(self, name: str | None = None) -> list[SignedCheckpoint]:
        """The newest checkpoint of each log (or of ``name``), by log."""
        table = self.table
        newest = select(table.log, func.max(table.size).label("size")).group_by(table.log)
        if name is not None:
            newest = newest.where(table.log == name)
        sub = newest.subquery()
        query = (
            select(table)
            .join(sub, (col(table.log) == sub.c.log) & (col(table.size) == sub.c.size))
            .order_by(col(table.log))
        )
        with Session(self.engine) as session:
            return [self._of(row) for row in session.exec(query)]

    def at(self, name: str, size: int) -> SignedCheckpoint | None:
        with Session(self.engine) as session:
            row = session.get(self.table, (name, size))
            return self._of(row) if row is not None else None

    def unpublished(self, limit: int = 100) -> list[SignedCheckpoint]:
        with Session(self.engine) as session:
            rows = session.exec(
                select(self.table)
                .where(col(self.table.published_at).is_(None))
                .order_by(col(self.table.signed_at))
                .limit(limit)
            )
            return [self._of(row) for row in rows]

    def mark_all_unpublished(self) -> int:
        """Every checkpoint to be published again (the topic restarted empty)."""
        with Session(self.engine) as session:
            result = session.execute(
                update(self.table)
                .where(col(self.table.published_at).is_not(None))
                .values(published_at=None)
            )
            session.commit()
            return int(result.rowcount)  # type: ignore[attr-defined]

    def mark_published(self, checkpoint: SignedCheckpoint, at: datetime) -> None:
        with Session(self.engine) as session:
            row = session.get(self.table, (checkpoint.log, checkpoint.size))
            if row is not None:
                row.published_at = iso_utc(at)
                session.add(row)
                session.commit()


def checkpoint_event(checkpoint: SignedCheckpoint, producer: str) -> CheckpointSigned:
    """The ``checkpoint.signed`` event announcing ``checkpoint``; its id follows from the
    checkpoint, so publishing it again is harmless."""
    name = f"{checkpoint.log}\n{checkpoint.size}\n{checkpoint.root}"
    return CheckpointSigned(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"carveout-checkpoint:{name}"),
        occurred_at=datetime.fromisoformat(checkpoint.signed_at),
        producer=producer,
        key=checkpoint.log,
        data=CheckpointSignedData(
            log=checkpoint.log, size=checkpoint.size, root=checkpoint.root, note=checkpoint.note
        ),
    )


Publish = Callable[[bytes, str, bytes], Awaitable[Any]]
"""``(value, topic, key)``: publish one record, signed, and wait for the broker."""


@dataclass(eq=False)
class Checkpointer:
    """Signs a checkpoint of each log that grew since its last one, every ``interval_s``,
    and publishes what it signed. Without a signer (no key configured) it signs nothing."""

    logs: TransparencyLogs
    book: CheckpointBook
    signer: NoteSigner | None
    publish: Publish
    producer: str
    interval_s: float = 1.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _signed: dict[str, int] | None = field(default=None, init=False)

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("checkpointing failed; trying again")
            # A fixed rate, not a fixed pause: a slow tick does not stretch the period.
            due = max(due + self.interval_s, loop.time())
            await asyncio.sleep(due - loop.time())

    async def tick(self) -> list[SignedCheckpoint]:
        """Sign what grew, then publish what is signed and not yet published."""
        signed = self.sign_grown() if self.signer is not None else []
        for checkpoint in signed:
            await asyncio.to_thread(self.book.save, checkpoint)
        while pending := await asyncio.to_thread(self.book.unpublished):
            for checkpoint in pending:
                event = checkpoint_event(checkpoint, self.producer)
                value = codec.encode_value(event)
                await self.publish(value, topics.CHECKPOINTS, event.key.encode())
                await asyncio.to_thread(self.book.mark_published, checkpoint, self.clock())
        return signed

    async def put_back(self) -> int:
        """Publish every checkpoint again, at the next tick (the topic restarted empty)."""
        return await asyncio.to_thread(self.book.mark_all_unpublished)

    def sign_grown(self) -> list[SignedCheckpoint]:
        assert self.signer is not None
        if self._signed is None:
            self._signed = {c.log: c.size for c in self.book.latest()}
        self.logs.sync_all()
        signed = []
        for name in self.logs.names():
            tree = self.logs.tree(name)
            size = tree.size
            if size == 0 or size <= self._signed.get(name, 0):
                continue
            root = tree.root(size)
            note = sign_checkpoint(Checkpoint(name, size, root), self.signer)
            signed.append(SignedCheckpoint(name, size, b64(root), note, iso_utc(self.clock())))
            self._signed[name] = size
        return signed
