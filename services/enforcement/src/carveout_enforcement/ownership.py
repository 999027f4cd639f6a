"""Which replica judges which access partition: claims in the store, fencing stale writers.

Enforcement replicas share the partitions of ``carveout.access`` through one consumer
group, and one store. The usage totals a batch reads are those in this replica's memory,
so a replica that takes a partition over must start from the store's totals, and a
replica that lost a partition (paused past its session, say) must not record a batch
judged on its own stale totals after the new owner started. Kafka's group alone cannot
promise that: a paused consumer wakes up still believing it owns its partitions.

So each assignment is a *claim* in the store (owner, epoch + 1), and every batch's
transaction first reads its partitions' claims, locked: a claim made meanwhile waits for
the batch to commit (and then reloads totals that include it), and a batch whose claim
was superseded is rolled back (:class:`PartitionTakenOver`) and left to the new owner,
which judges it again from the offsets committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.abc import ConsumerRebalanceListener
from sqlalchemy import Connection, Engine

from carveout_contracts.common import iso_utc
from carveout_runtime.retries import ConsumerHealth, NotRetried, with_retries

from .judge import UsageKey

log = logging.getLogger("carveout.enforcement.ownership")


class PartitionTakenOver(NotRetried):
    """Another replica claimed a partition of this batch since this one did."""


def superseded(
    partitions: Iterable[int],
    owner: str,
    held: Mapping[int, int],
    stored: Mapping[int, tuple[str, int]],
) -> list[int]:
    """The partitions of a batch on which this replica's claim is no longer the latest.

    ``held``: partition → epoch this replica claimed; ``stored``: partition → (owner,
    epoch) in the store. A partition nobody ever claimed is nobody's to lose (a consumer
    outside a group: tests, tools); one claimed by another replica is lost.
    """
    return sorted(p for p in set(partitions) if p in stored and stored[p] != (owner, held.get(p)))


@dataclass(eq=False)
class PartitionClaims:
    """This replica's claims on access partitions, made on assignment and checked by each
    batch's transaction; on a new claim, the usage totals in memory are reloaded."""

    engine: Engine
    owner: str
    usage: dict[UsageKey, int]
    """The totals decisions read: replaced in place by the store's on a claim."""
    load_usage: Callable[[], dict[UsageKey, int]]
    held: dict[int, int] = field(default_factory=dict)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def claim(self, partitions: list[int]) -> tuple[dict[int, int], dict[UsageKey, int]]:
        """Claim ``partitions`` (epoch + 1 each) and read the usage totals, both once any
        batch still recording on them has committed (it holds their claim rows); returns
        the epochs and the totals, for :meth:`adopt` on the event loop."""
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        with self.engine.begin() as connection:
            for partition in partitions:
                connection.exec_driver_sql(
                    "INSERT INTO access_partition_owners (log_partition, owner, epoch, claimed_at)"
                    f" VALUES ({mark}, {mark}, 1, {mark}) ON CONFLICT (log_partition) DO UPDATE"
                    " SET owner = excluded.owner, epoch = access_partition_owners.epoch + 1,"
                    " claimed_at = excluded.claimed_at",
                    (partition, self.owner, iso_utc(self.clock())),
                )
            stored = self._read(connection, partitions, lock=False)
        return {p: epoch for p, (_, epoch) in stored.items()}, self.load_usage()

    def adopt(self, epochs: Mapping[int, int], totals: Mapping[UsageKey, int]) -> None:
        """Hold the claims made, and judge from the store's totals from now on."""
        self.held.update(epochs)
        self.usage.clear()
        self.usage.update(totals)

    def _read(
        self, connection: Connection, partitions: list[int], *, lock: bool
    ) -> dict[int, tuple[str, int]]:
        mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        marks = ", ".join([mark] * len(partitions))
        # FOR UPDATE: a claim on these partitions waits until this transaction is over.
        # SQLite has one writer at a time and a single replica: no lock is needed there.
        locked = " FOR UPDATE" if lock and connection.dialect.name == "postgresql" else ""
        rows = connection.exec_driver_sql(
            "SELECT log_partition, owner, epoch FROM access_partition_owners"
            f" WHERE log_partition IN ({marks}){locked}",
            tuple(partitions),
        )
        return {int(p): (str(owner), int(epoch)) for p, owner, epoch in rows}

    def fence(self, partitions: Iterable[int]) -> Callable[[Connection], None]:
        """The check a batch of ``partitions`` makes first in its recording transaction."""
        wanted = sorted(set(partitions))

        def check(connection: Connection) -> None:
            stored = self._read(connection, wanted, lock=True)
            lost = superseded(wanted, self.owner, self.held, stored)
            if lost:
                raise PartitionTakenOver(
                    f"access partitions {lost} were claimed by another replica since "
                    f"{self.owner} claimed them"
                )

        return check

    def release(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.held.pop(partition, None)


class ClaimOnAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Claims the access partitions the group assigns to this replica, before it reads
    from them."""

    def __init__(
        self,
        claims: PartitionClaims,
        health: ConsumerHealth,
        released: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.claims = claims
        self.health = health
        self.released = released
        """Told of the partitions handed to another replica (what a broker restart lost
        of them is the new owner's to count)."""
        self._revoked: set[int] = set()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        partitions = [tp.partition for tp in revoked]
        self.claims.release(partitions)
        self._revoked.update(partitions)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        partitions = [tp.partition for tp in assigned]
        # A rebalance revokes everything first (a broker restart's too): only what did not
        # come back went to another replica.
        gone, self._revoked = sorted(self._revoked - set(partitions)), set()
        if gone and self.released is not None:
            self.released(gone)
        if not partitions:
            return
        epochs, totals = await with_retries(
            lambda: self.claims.claim(sorted(partitions)),
            attempts=1,
            what="claiming access partitions",
            health=self.health,  # while the store is down, without bound (shown stalled)
            in_thread=True,
        )
        self.claims.adopt(epochs, totals)
        log.info("claimed access partitions %s (epochs %s)", partitions, epochs)
