"""``GroupProgress``: whether a consumer group has committed a topic up to the ends it has
now, read without joining the group (on the real broker)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from carveout_runtime.group_progress import GroupProgress

pytestmark = pytest.mark.broker


async def test_caught_up_once_the_group_commits_the_ends_read_when_asked(
    kafka_bootstrap: str,
) -> None:
    topic, group = f"progress-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    for n in range(3):
        await producer.send_and_wait(topic, b"x", partition=n % 2)
    committer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    committer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    progress = GroupProgress(kafka_bootstrap, group, topic)
    await progress.start()
    try:
        assert not await progress.wait_caught_up(within_s=0.2)  # nothing committed
        ends = await progress.ends()
        assert await progress.short_of(ends) == {0: 2, 1: 1}

        await committer.commit({TopicPartition(topic, 0): 2})
        assert await progress.short_of(ends) == {1: 1}

        await producer.send_and_wait(topic, b"later", partition=0)  # after the ends read
        await committer.commit({TopicPartition(topic, 1): 1})
        assert await progress.short_of(ends) == {}
        assert await progress.short_of(await progress.ends()) == {0: 1}
        assert not await progress.wait_caught_up(within_s=0.2)  # the ends now include it
        await committer.commit({TopicPartition(topic, 0): 3})
        assert await progress.wait_caught_up(within_s=10)
    finally:
        await progress.stop()
        await committer.stop()
        await producer.stop()
