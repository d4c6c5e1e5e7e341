"""The worker consumer's seek back when it drops fetched records (streams/worker/consumer.py ``seek_back``).

Faust drops records fetched while its flow is stopped for a rebalance and seeks back to the committed
offsets; aiokafka does not move a partition nothing was ever committed for. A chaos run lost the first
three messages of a snapshot partition that way (docs/failover.md, "The first messages of a partition").
Here a real group consumer on a real broker fetches a never-committed partition's first messages, and
the seek back must bring them again.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic
from aiokafka.structs import TopicPartition

from streams.kafka import make_producer
from streams.kafka.connect import make_admin
from streams.settings import Settings
from streams.worker.consumer import seek_back

pytestmark = pytest.mark.integration

FETCH_DEADLINE_S = 30.0


async def _fetch_offsets(consumer: AIOKafkaConsumer, tp: TopicPartition, count: int) -> list[int]:
    """The offsets of the next `count` records of `tp` (waits for them, with a deadline)."""
    offsets: list[int] = []
    async with asyncio.timeout(FETCH_DEADLINE_S):
        while len(offsets) < count:
            records = await consumer.getmany(tp, timeout_ms=500)
            offsets += [r.offset for r in records.get(tp, [])]
    return offsets


async def _topic_with(settings: Settings, topic: str, committed_partition: int, messages: int) -> None:
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    producer = make_producer(settings, "test-seek", linger_ms=0)
    await producer.start()
    try:
        for partition in (0, committed_partition):
            for i in range(messages):
                await (await producer.send(topic, b"m%d" % i, partition=partition))
    finally:
        await producer.stop()


async def _refetched(settings: Settings, seek: str) -> tuple[list[int], list[int], list[int]]:
    """Fetch partition 0 (never committed) and partition 1 (committed at 2) to their ends, seek back
    with `seek`, fetch again: (first fetch of 0, fetch of 0 after the seek, fetch of 1 after it)."""
    topic = f"t{uuid.uuid4().hex[:10]}"
    await _topic_with(settings, topic, 1, 3)
    never, committed = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=f"g{uuid.uuid4().hex[:10]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([never, committed])
        first = await _fetch_offsets(consumer, never, 3)
        await _fetch_offsets(consumer, committed, 3)
        await consumer.commit({committed: 2})
        if seek == "worker":
            await seek_back(consumer.seek_to_committed, consumer.seek_to_beginning, {topic})
        else:
            await consumer.seek_to_committed()
        again = (
            await _fetch_offsets(consumer, never, 3) if seek == "worker" else [await consumer.position(never)]
        )
        after = await _fetch_offsets(consumer, committed, 1)
    finally:
        await consumer.stop()
    return first, again, after


def test_aiokafka_does_not_seek_back_a_partition_nothing_was_committed_for(kafka_bootstrap: str) -> None:
    # the mechanism of the loss: after Faust's seek back, the never-committed partition is still at 3
    first, position, after = asyncio.run(_refetched(Settings(bootstrap=kafka_bootstrap), "aiokafka"))
    assert first == [0, 1, 2]
    assert position == [3]
    assert after == [2]


def test_the_worker_seeks_a_never_committed_partition_back_to_its_first_message(kafka_bootstrap: str) -> None:
    first, again, after = asyncio.run(_refetched(Settings(bootstrap=kafka_bootstrap), "worker"))
    assert first == [0, 1, 2]
    assert again == [0, 1, 2]  # fetched again: nothing the worker dropped is skipped
    assert after == [2]  # a committed partition still goes back to its committed offset
