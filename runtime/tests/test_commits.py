"""Offsets are committed a few times a second, of the records processed only (never the
consumer's position, which runs ahead of the record in hand), of the partitions still held;
a failed commit is dropped, never raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from carveout_runtime.commits import OffsetCommits


@dataclass
class Record:
    partition: int
    offset: int
    topic: str = "carveout.grants"


@dataclass
class Consumer:
    held: set[TopicPartition] = field(
        default_factory=lambda: {TopicPartition("carveout.grants", p) for p in (0, 1)}
    )
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    fail: bool = False

    def assignment(self) -> set[TopicPartition]:
        return self.held

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail:
            raise CommitFailedError("rebalanced")
        self.commits.append(offsets)


def tp(partition: int) -> TopicPartition:
    return TopicPartition("carveout.grants", partition)


async def test_the_next_offset_of_each_partition_processed_is_committed_once_due() -> None:
    commits, consumer = OffsetCommits(every_s=3600, records=3), Consumer()
    commits.processed(Record(0, 7))
    commits.processed(Record(1, 2))
    assert not commits.due()
    commits.processed(Record(0, 8))
    assert commits.due()  # three records: at once

    await commits.flush(consumer)
    assert consumer.commits == [{tp(0): 9, tp(1): 3}]
    assert not commits.due()
    await commits.flush(consumer)
    assert len(consumer.commits) == 1  # nothing new


async def test_a_record_waits_at_most_every_s() -> None:
    commits = OffsetCommits(every_s=0.0, records=1000)
    assert not commits.due()
    commits.processed(Record(0, 1))
    assert commits.due()


async def test_partitions_no_longer_held_and_failed_commits_are_dropped() -> None:
    commits, consumer = OffsetCommits(), Consumer(held={tp(1)})
    commits.processed(Record(0, 4))
    commits.processed(Record(1, 5))
    await commits.flush(consumer)
    assert consumer.commits == [{tp(1): 6}]

    failing: Any = Consumer(fail=True)
    commits.processed(Record(0, 6))
    await commits.flush(failing)  # does not raise: the records come again, as processed
    assert commits.pending == {}
