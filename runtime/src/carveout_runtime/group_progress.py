"""How far a consumer group has committed a topic, against the topic's end now.

A consumer of one topic sometimes needs to know that its group has stored everything
another topic held when a record came in: a breach names a grant, and the grant event
that made it was on ``carveout.grants`` before the breach was published. Offsets are
committed only after the store has the records, so once the group's committed offsets
reach the ends read now, the store holds every record the topic had, whichever replica
of the group read it.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from .logread import partitions


class TopicEnds:
    """A client that reads ``topic``'s end offsets and, given ``group_id``, that group's
    committed offsets, without joining any group: it takes no partition from anyone."""

    def __init__(self, bootstrap: str, topic: str, group_id: str | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self._client: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Nothing yet: the client connects when first asked, so a service starting while
        the broker is down waits for it where it waits for the broker, not at start-up."""

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.stop()
            self._client = None

    async def connected(self) -> AIOKafkaConsumer:
        if self._client is None:
            client = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=self.group_id, enable_auto_commit=False
            )
            try:
                await client.start()
            except BaseException:
                await client.stop()
                raise
            self._client = client
        return self._client

    async def ends(self) -> dict[TopicPartition, int]:
        client = await self.connected()
        tps = await partitions(client, self.topic)
        return dict(await client.end_offsets(tps)) if tps else {}


class GroupProgress(TopicEnds):
    """How far ``group_id`` has committed ``topic``."""

    def __init__(self, bootstrap: str, group_id: str, topic: str) -> None:
        super().__init__(bootstrap, topic, group_id)

    async def short_of(self, ends: dict[TopicPartition, int]) -> dict[int, int]:
        """For each partition the group has not committed up to ``ends``: how far it has to go
        (asked of the group's coordinator each time: committed offsets are not cached)."""
        client = await self.connected()
        left = {}
        for tp, end in ends.items():
            committed = await client.committed(tp) or 0
            if committed < end:
                left[tp.partition] = end - committed
        return left

    async def wait_caught_up(self, within_s: float, every_s: float = 0.05) -> bool:
        """Wait, at most ``within_s``, until the group has committed the topic up to the
        ends it has now (not those of records arriving meanwhile); says whether it has."""
        # The client's own requests wait out a missing coordinator without bound: the
        # whole wait is bounded here instead.
        try:
            async with asyncio.timeout(within_s):
                ends = await self.ends()
                while True:  # the broker is asked: nothing here to wait on but time
                    if not await self.short_of(ends):
                        return True
                    await asyncio.sleep(every_s)
        except TimeoutError:
            return False
