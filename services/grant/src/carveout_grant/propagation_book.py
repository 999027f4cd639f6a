"""The grant service's live view of propagation: answers from the store, a wake-up for
requests waiting on a version (``"wait": "applied"``), and the propagation metric.

The acks consumer calls :meth:`PropagationBook.acked` and :meth:`PropagationBook.moved`
after each write; a waiting request wakes on those, or at the moment a pending enforcer's
last heartbeat grows too old for it to count as alive. Grant replicas share the acks
topic's partitions, so another replica may fold the ack a request waits for: a waiting
request also reads the store every ``watch_seconds``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Histogram

from carveout_contracts import EnforcementApplied
from carveout_runtime.retries import wait_set

from .acks_store import AckStore
from .clock import Clock, system_clock
from .propagation import (
    Beat,
    VersionPropagation,
    alive_enforcers,
    next_change,
    propagation_of,
)

PROPAGATION_ALL = Histogram(
    "carveout_propagation_all_seconds",
    "From the log receiving a grant event to every live enforcement replica having "
    "acknowledged the version it makes (read by the grant service as the acks arrive).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECENT = timedelta(minutes=10)
"""Versions the log received longer ago than this are not timed when acknowledged: an
enforcer started afresh acknowledges the whole history, which is no action propagating."""
TIMED_MEMORY = 10_000
"""How many timed versions are remembered, so a re-delivered ack is not timed twice."""
SHORTEST_WAIT_S = 0.01
"""Floor of one wait for a liveness change, so a clock that stands still cannot spin."""


@dataclass(frozen=True, slots=True)
class GrantPropagation:
    """A grant's versions and their propagation, as of one reading of the clock."""

    grant_id: str
    as_of: datetime
    alive: list[str]
    """The enforcers alive at ``as_of``."""
    versions: list[VersionPropagation]
    total_versions: int


class PropagationBook:
    """Propagation answers over an :class:`AckStore`, read at the injected clock's time."""

    def __init__(
        self, store: AckStore, clock: Clock = system_clock, watch_seconds: float = 0.1
    ) -> None:
        self.store = store
        self.clock = clock
        self.watch_seconds = watch_seconds
        self._changed = asyncio.Event()
        self._timed: OrderedDict[tuple[str, int], None] = OrderedDict()

    def of_grant(self, grant_id: str, newest: int) -> GrantPropagation | None:
        """The propagation of a grant's ``newest`` latest versions, oldest first; ``None``
        for a grant never issued."""
        versions = self.store.versions(grant_id)
        if versions is None:
            return None
        now, beats = self.clock(), self.store.beats()
        acks = self.store.acks_of(grant_id)
        shown = versions[-newest:]
        return GrantPropagation(
            grant_id=grant_id,
            as_of=now,
            alive=alive_enforcers(beats, now),
            versions=[propagation_of(v, acks, beats, now) for v in shown],
            total_versions=len(versions),
        )

    def of_version(
        self, grant_id: str, version: int, beats: Sequence[Beat], now: datetime
    ) -> VersionPropagation | None:
        made = [v for v in self.store.versions(grant_id) or () if v.version == version]
        if not made:
            return None
        return propagation_of(made[-1], self.store.acks_of(grant_id, version), beats, now)

    async def wait_applied(
        self, wanted: Mapping[str, int], within_s: float
    ) -> dict[str, VersionPropagation | None]:
        """Each named grant version's propagation once every one is complete, or as it
        stands after ``within_s`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            signal = self._changed  # taken before reading: no change slips in between
            now, beats = self.clock(), self.store.beats()
            answers = {g: self.of_version(g, v, beats, now) for g, v in wanted.items()}
            remaining = deadline - loop.time()
            if remaining <= 0 or all(a is not None and a.complete for a in answers.values()):
                return answers
            pending = {e for answer in answers.values() if answer for e in answer.pending}
            turn = next_change(pending, beats, now)
            if turn is not None:
                remaining = min(remaining, max(turn.total_seconds(), SHORTEST_WAIT_S))
            await wait_set(signal, min(remaining, self.watch_seconds))

    def moved(self) -> None:
        """A heartbeat showed an enforcer further on (or for the first time)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def acked(self, ack: EnforcementApplied) -> None:
        """An ack was recorded: wake the waiting requests, and time the version's
        propagation if this ack completed it."""
        self.moved()
        key = (ack.data.grant_id, ack.data.version)
        if key in self._timed:
            return
        now = self.clock()
        appended = self.store.appended_at_of(str(ack.data.grant_event_id))
        if appended is None or now - appended > RECENT:
            return
        answer = self.of_version(*key, self.store.beats(), now)
        if answer is None or not answer.complete:
            return
        PROPAGATION_ALL.observe(max(0.0, (now - appended).total_seconds()))
        self._timed[key] = None
        if len(self._timed) > TIMED_MEMORY:
            self._timed.popitem(last=False)
