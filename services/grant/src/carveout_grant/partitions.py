"""Which partition of ``carveout.grants`` a grant's events land in.

Consumers apply a grant's versions in the order its partition holds them. A carveout-wide
revocation names many grants, and one record lands in one partition: so it is announced
by one ``carveout.revoked`` per partition its grants fall in, each keyed by one of those
grants (:func:`carveout_grant.domain.revoke_in_parts`), and every grant's versions stay
in one partition, in order. Until the partition count is known, by one per grant.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2

from carveout_contracts import topics
from carveout_runtime.logread import partitions

log = logging.getLogger("carveout.grant.partitions")


def partition_of(key: str, count: int) -> int:
    """The partition the producer's default partitioner puts ``key`` in (Kafka's murmur2,
    as the Java client and aiokafka compute it)."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % count


@dataclass
class GrantsPartitions:
    """How many partitions ``carveout.grants`` has, read from the broker (topics are made
    once and never repartitioned: see ``carveout up`` and the compose ``topics`` job)."""

    count: int | None = None

    def of(self, grant_id: str) -> Hashable:
        """What a grant's events share a partition with: its partition, or, before the
        count is known, the grant alone."""
        return grant_id if self.count is None else partition_of(grant_id, self.count)

    async def read_until_known(self, bootstrap: str, every_s: float = 1.0) -> None:
        while self.count is None:
            try:
                await self.read(bootstrap)
            except Exception as exc:
                log.debug("reading the partitions of %s failed: %s", topics.GRANTS, exc)
            if self.count is None:
                await asyncio.sleep(every_s)

    async def read(self, bootstrap: str) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            found = await partitions(consumer, topics.GRANTS)
        finally:
            await consumer.stop()
        if found:
            self.count = len(found)
