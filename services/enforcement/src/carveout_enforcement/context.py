"""Everything the enforcement service's routes read, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from faststream.kafka import KafkaBroker

from carveout_runtime.consumers import EventHandler

from .clock import Clock, system_clock
from .decision.decide import DecisionState
from .freshness import GrantsLog
from .handlers.access import AccessPipeline
from .handlers.grants import GrantIndex
from .judge import UsageKey
from .outbox import BreachOutbox
from .settings import EnforcementSettings
from .store import EnforcementStore


@dataclass(frozen=True, slots=True)
class EnforcementContext:
    settings: EnforcementSettings
    store: EnforcementStore
    index: GrantIndex
    """Every grant's view, in memory: what accesses and decisions are judged against."""
    usage: dict[UsageKey, int]
    """The usage totals of the accesses recorded."""
    grants_log: GrantsLog
    broker: KafkaBroker
    grant_events: EventHandler
    """The consumer of ``carveout.grants``."""
    pipeline: AccessPipeline
    """The consumer of ``carveout.access``."""
    outbox: BreachOutbox
    decisions: DecisionState
    clock: Clock = system_clock
