"""The batch sender's partitioning when the producer's metadata forgets a topic (a pure unit test: the
producer is a fake that keeps aiokafka's shapes)."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.kafka.batches import BatchSender


class Cluster:
    def __init__(self) -> None:
        self.topics: dict[str, set[int]] = {}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.topics.get(topic)


class Client:
    def __init__(self) -> None:
        self.cluster = Cluster()


class Producer:
    """What BatchSender uses of AIOKafkaProducer: metadata, the partitioner, batches."""

    def __init__(self) -> None:
        self.client = Client()
        self.metadata_waits = 0
        self.sent: list[tuple[str, int, int]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        self.metadata_waits += 1
        self.client.cluster.topics[topic] = {0, 1, 2}
        return self.client.cluster.topics[topic]

    def _partition(self, topic: str, partition: Any, key: Any, value: Any, sk: Any, sv: Any) -> int:
        partitions = list(self.client.cluster.partitions_for_topic(topic))  # type: ignore[arg-type]
        return sorted(partitions)[hash(key) % len(partitions)]

    def create_batch(self) -> Any:
        return Batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent.append((topic, partition, batch.record_count()))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class Batch:
    def __init__(self) -> None:
        self.records = 0

    def append(self, **_: Any) -> object:
        self.records += 1
        return object()

    def record_count(self) -> int:
        return self.records


def test_a_topic_missing_from_replaced_metadata_is_waited_for_again_not_a_crash() -> None:
    async def run() -> Producer:
        producer = Producer()
        sender = BatchSender(producer)
        await sender.queue([("t", None, b"1", None, None)])
        producer.client.cluster.topics = {}  # a metadata update replaced the topic map without "t"
        await sender.queue([("t", None, b"2", None, None), ("t", b"k", b"3", None, None)])
        return producer

    producer = asyncio.run(run())
    assert producer.metadata_waits == 2  # once at first, once after the topic went missing
    assert sum(count for _, _, count in producer.sent) == 3


def test_known_metadata_is_not_waited_for() -> None:
    async def run() -> Producer:
        producer = Producer()
        producer.client.cluster.topics["t"] = {0, 1, 2}
        sender = BatchSender(producer)
        await sender.queue([("t", b"k", b"1", None, None), ("t", None, b"2", None, None)])
        return producer

    assert asyncio.run(run()).metadata_waits == 0


def test_a_key_seen_before_keeps_its_partition_without_the_partitioner() -> None:
    async def run() -> Producer:
        producer = Producer()
        producer.client.cluster.topics["t"] = {0, 1, 2}
        sender = BatchSender(producer)
        await sender.queue([("t", b"k", b"1", None, None)])
        producer.client.cluster.topics = {}  # gone from the metadata: only send_batch needs it (it waits)
        await sender.queue([("t", b"k", b"2", None, None)])
        return producer

    producer = asyncio.run(run())
    assert producer.metadata_waits == 0
    assert [partition for _, partition, _ in producer.sent] == [producer.sent[0][1]] * 2
