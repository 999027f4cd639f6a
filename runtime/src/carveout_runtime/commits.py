"""Committing a consumer's offsets a few times a second, not after every record.

A record's offset is committed only once the record is processed (its effects and its
processed mark are in the store), as before; but committing is a round trip to the
broker, and one per record bounded a consumer to a few dozen records a second under load
(after a broker restart every topic put back from the stores is read again, thousands of
duplicates). Committing later is safe: a record delivered again is skipped by its
``event_id``. Offsets are those of records processed, never the consumer's position,
which runs ahead of the record in hand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

log = logging.getLogger("carveout.commits")

COMMIT_EVERY_S = 0.2
"""The longest a processed record's offset waits to be committed."""

COMMIT_RECORDS = 500
"""Processed records that are committed at once, however soon."""


class OffsetCommits:
    """The next offset to commit of each partition a subscriber processed, committed at
    most ``every_s`` after the first of them, or once ``records`` are pending."""

    def __init__(self, every_s: float = COMMIT_EVERY_S, records: int = COMMIT_RECORDS) -> None:
        self.every_s = every_s
        self.records = records
        self.pending: dict[TopicPartition, int] = {}
        self._count = 0
        self._since: float | None = None
        self._committing = asyncio.Lock()  # one commit at a time: offsets never go back

    def processed(self, record: Any) -> None:
        """``record`` is processed: its offset may be committed."""
        self.pending[TopicPartition(record.topic, record.partition)] = record.offset + 1
        self._count += 1
        if self._since is None:
            self._since = time.monotonic()

    def due(self) -> bool:
        if self._since is None:
            return False
        return self._count >= self.records or time.monotonic() - self._since >= self.every_s

    async def flush(self, consumer: Any) -> None:
        """Commit what is pending, of the partitions the consumer still holds; a failed
        commit is dropped (those records come again, and are skipped as processed)."""
        if not self.pending or consumer is None:
            return
        async with self._committing:
            offsets, self.pending, self._count, self._since = self.pending, {}, 0, None
            held = consumer.assignment()
            offsets = {tp: offset for tp, offset in offsets.items() if tp in held}
            if not offsets:
                return
            try:
                await consumer.commit(offsets)
            except (KafkaError, OSError, AssertionError) as exc:  # rebalanced, broker away
                log.info("offsets not committed (they come again, as processed): %s", exc)

    async def run(self, subscriber: Any) -> None:
        """Commit what waits once it is due, for as long as the process runs, and what is
        left when it stops."""
        try:
            while True:
                await asyncio.sleep(self.every_s / 2)
                if self.due():
                    await self.flush(getattr(subscriber, "consumer", None))
        except asyncio.CancelledError:
            await self.flush(getattr(subscriber, "consumer", None))
            raise
