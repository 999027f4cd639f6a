"""Kafka topic names and what each carries (DESIGN: wire contract)."""

from typing import Final

GRANTS: Final = "carveout.grants"
ACCESS: Final = "carveout.access"
BREACHES: Final = "carveout.breaches"
NOTIFICATIONS: Final = "carveout.notifications"
DEADLETTER: Final = "carveout.deadletter"
ACKS: Final = "carveout.acks"
CHECKPOINTS: Final = "carveout.checkpoints"

ALL_TOPICS: Final[tuple[str, ...]] = (
    GRANTS,
    ACCESS,
    BREACHES,
    NOTIFICATIONS,
    DEADLETTER,
    ACKS,
    CHECKPOINTS,
)
