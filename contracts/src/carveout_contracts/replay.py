"""What every service's replay shares: its report, progress, and the fresh-store check.

A replay rebuilds one service's store from the topics into a database of the operator's
choosing, side-effect free: it creates no producer, sends nothing and publishes nothing.
Each service's ``replay`` module folds the log with the same projection code its live
handlers use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, inspect

Progress = Callable[[str, int, int], None]
"""``(what is being read, records done, records in all)``."""


def no_progress(_what: str, _done: int, _total: int) -> None:
    return None


@dataclass
class ReplayReport:
    service: str
    database_url: str
    records: dict[str, int] = field(default_factory=dict)
    """Records read, by topic."""
    poison: int = 0
    """Records that do not decode (the live service dead-lettered them too)."""
    skipped: int = 0
    """Records before ``--since``, or already in the target store."""
    seconds: float = 0.0
    digest: dict[str, Any] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(self.records.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "database_url": self.database_url,
            "records": self.records,
            "events": self.events,
            "poison": self.poison,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events / self.seconds) if self.seconds else None,
            "digest": self.digest["digest"],
            "tables": self.digest["tables"],
        }


class NotAFreshStore(Exception):
    """A replay's target database already holds rows of the service's tables."""


def require_fresh(engine: Engine, tables: Sequence[str]) -> None:
    """Refuse to replay over a store that already has data (unless ``--since`` is given)."""
    present = set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        for table in tables:
            if (
                table in present
                and connection.exec_driver_sql(f"SELECT 1 FROM {table} LIMIT 1").first()
            ):
                raise NotAFreshStore(
                    f"the target database already has rows in {table!r}: replay rebuilds into "
                    "a fresh database (give another --database-url), or pass --since to "
                    "catch up a restored copy"
                )


def since_ms(moment: datetime | None) -> int | None:
    """``--since`` as a record timestamp (epoch milliseconds)."""
    return None if moment is None else int(moment.timestamp() * 1000)
