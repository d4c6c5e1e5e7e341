"""Reading a changelog's partitions straight from Kafka (the worker's restore, streams/kafka/changelog.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import NewTopic

from streams.kafka import make_producer
from streams.kafka.changelog import latest_values
from streams.kafka.connect import make_admin
from streams.settings import Settings

pytestmark = pytest.mark.integration


async def _written_then_read(settings: Settings, topic: str) -> dict[int, dict[bytes, bytes]]:
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    producer = make_producer(settings, "test-changelog", linger_ms=0)
    await producer.start()
    try:
        for i in range(3000):  # many versions of one key, and keys that come and go
            await producer.send(topic, b"v%d" % i, key=b"P:0", partition=0)
            await producer.send(topic, b"d%d" % i, key=b"D:%d" % i, partition=0)
            if i % 2:
                await producer.send(topic, None, key=b"D:%d" % i, partition=0)
        await producer.send(topic, b"other", key=b"P:1", partition=1)
        await producer.send(topic, b"gone", key=b"B:1", partition=1)
        await producer.send(topic, None, key=b"B:1", partition=1)
        last = await producer.send(topic, b"last", key=b"L:u1", partition=0)
        await last  # acknowledged: below the high-water mark the read takes next
    finally:
        await producer.stop()
    return await latest_values(settings, topic, [0, 1, 2])


def test_each_key_has_its_latest_value_and_tombstoned_keys_are_gone(kafka_bootstrap: str) -> None:
    settings = Settings(bootstrap=kafka_bootstrap)
    topic = f"t{uuid.uuid4().hex[:10]}-changelog"
    values = asyncio.run(_written_then_read(settings, topic))
    assert values[0][b"P:0"] == b"v2999"
    assert values[0][b"L:u1"] == b"last"
    assert {k for k in values[0] if k.startswith(b"D:")} == {b"D:%d" % i for i in range(0, 3000, 2)}
    assert values[1] == {b"P:1": b"other"}
    assert values[2] == {}
