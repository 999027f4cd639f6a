"""How far the grant projection has applied ``carveout.grants``, and when a batch of
accesses may be judged.

Enforcement must never conclude "no grant" merely because it has not yet read the grant
that covers an access, and must not judge an access after a revocation it has not read.
Before judging a batch, the access pipeline lets late grant events land
(:func:`late_grant_wait`), then waits until the projection has applied the grants log up
to the ends it has now; the decision API checks, at no cost, that the grants consumer has
polled recently and has nothing left to apply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from aiokafka import TopicPartition

from carveout_contracts import topics
from carveout_runtime.group_progress import TopicEnds
from carveout_runtime.retries import wait_set

from .clock import Clock, system_clock

log = logging.getLogger("carveout.enforcement.freshness")


class ProjectionCatchUp(Protocol):
    """What the access pipeline waits on before judging a batch."""

    async def wait_caught_up(self, within_s: float) -> bool:
        """Wait, at most ``within_s``, until every grant event published before now has
        been applied; says whether it has."""
        ...


class Freshness(Protocol):
    """What a decision checks before it answers from memory."""

    def fresh(self, bound_s: float) -> bool:
        """Whether the projection can show it is caught up on the grants log, ``bound_s``
        at most ago."""
        ...


class WholeLogRead:
    """A replay folds the whole grants log before it judges: it is always caught up."""

    async def wait_caught_up(self, within_s: float) -> bool:
        return True


def late_grant_wait(newest_at: float, guard_s: float, now: float) -> float:
    """How long to wait before judging a batch whose newest access the log took at
    ``newest_at`` (its record time; its ``occurred_at`` when it has none): until that is
    ``guard_s`` old, and never longer than ``guard_s``.

    A grant version covers the accesses stamped from its own record time on; where
    producers stamp records, an event stamped just before an access can land on the log
    just after the access is read. After the guard, the end offsets read next include
    every event stamped before the access. An access stamped ahead of the clock (a
    gateway's clock minutes fast) waits the guard and no longer.
    """
    if guard_s <= 0:
        return 0.0
    return max(0.0, min(newest_at + guard_s - now, guard_s))


class GrantsLog:
    """The live grants log: its end offsets, and how far the grants consumer applied it."""

    def __init__(self, bootstrap: str, clock: Clock = system_clock) -> None:
        self.bootstrap = bootstrap
        self.clock = clock
        self.applied_next: dict[int, int] = {}
        self.subscriber: Any = None
        self._progress = asyncio.Event()
        self._ends = TopicEnds(bootstrap, topics.GRANTS)

    def applied(self, record: Any) -> None:
        """The projection has handled this ``carveout.grants`` record."""
        if record.offset + 1 > self.applied_next.get(record.partition, 0):
            self.applied_next[record.partition] = record.offset + 1
        self._progress.set()

    async def start(self) -> None:
        await self._ends.start()

    async def stop(self) -> None:
        await self._ends.stop()

    async def ends(self) -> dict[int, int]:
        return {tp.partition: offset for tp, offset in (await self._ends.ends()).items()}

    async def _baseline(self, partitions: list[int]) -> None:
        """Partitions the projection has not read yet start at the group's committed offset."""
        consumer = getattr(self.subscriber, "consumer", None)
        if consumer is None:
            return
        for partition in partitions:
            if partition in self.applied_next:
                continue
            committed = await consumer.committed(TopicPartition(topics.GRANTS, partition))
            if committed is not None:
                self.applied_next.setdefault(partition, committed)

    async def applied_positions(self) -> dict[int, int]:
        """For each grants partition, the next offset the projection has applied: what it
        handled since it started, else the group's committed offset (what the store it
        loaded at start holds)."""
        consumer = getattr(self.subscriber, "consumer", None)
        if consumer is not None:
            assigned = [tp.partition for tp in consumer.assignment()]
            await self._baseline([p for p in assigned if p not in self.applied_next])
        return dict(self.applied_next)

    async def wait_caught_up(self, within_s: float) -> bool:
        """Wait until every grant event published before now has been applied."""
        ends = await self.ends()
        deadline = time.monotonic() + within_s
        baseline_taken = False
        while True:
            behind = [p for p, end in ends.items() if end > self.applied_next.get(p, 0)]
            if not behind:
                return True
            if not baseline_taken:
                await self._baseline(behind)
                baseline_taken = True
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("grant projection still behind on partitions %s", behind)
                return False
            self._progress.clear()
            if not await wait_set(self._progress, min(remaining, 0.05)):
                baseline_taken = False

    def fresh(self, bound_s: float) -> bool:
        """True when the grants consumer polled within ``bound_s`` and has nothing to apply."""
        consumer = getattr(self.subscriber, "consumer", None)
        if consumer is None:
            return False
        assignment = consumer.assignment()
        if not assignment:
            return False
        now_ms = self.clock() * 1000
        for tp in assignment:
            highwater = consumer.highwater(tp)
            polled = consumer.last_poll_timestamp(tp)
            if highwater is None or polled is None or now_ms - polled > bound_s * 1000:
                return False
            if highwater > self.applied_next.get(tp.partition, 0):
                return False
        return True
