"""aiokafka clients built from :class:`~streams.settings.Settings`, and the few reads every tool needs.

Nothing else in copybot constructs an aiokafka client (the Faust worker's own clients aside): a consumer
without a consumer group (copybot's readers assign partitions themselves and keep their offsets elsewhere),
the idempotent producer, and the admin client; then "assign every partition of these topics", "the end
offsets", "is it at the end" and "read a topic to its end".

Partitions come from the admin client's cluster metadata for *all* topics (``describe_topics(None)``,
aiokafka/admin/client.py:253): public, and it names no topic, so it never asks the broker to auto-create
one. (A consumer's own ``partitions_for_topic`` is empty until its metadata names the topic,
aiokafka/consumer/consumer.py:638-650, and refreshing that needs the private ``_client``.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from streams.errors import KafkaUnavailable
from streams.kafka.errors import kafka_errors
from streams.settings import Settings

__all__ = [
    "TopicPartition",
    "assign_all",
    "at_end",
    "make_admin",
    "make_consumer",
    "make_producer",
    "partition_counts",
    "read_to_end",
    "topic_partitions",
]

METADATA_POLL_S = 0.1
"""How often to ask again for a topic that is not in the cluster metadata yet."""


def make_consumer(
    settings: Settings,
    client_id: str = "copybot-reader",
    *,
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed",
    auto_offset_reset: Literal["earliest", "latest"] = "latest",
    max_partition_fetch_bytes: int = 1024 * 1024,
) -> Any:
    """A consumer without a consumer group or auto-commit (assign its partitions with :func:`assign_all`).

    `auto_offset_reset` applies when a seeked offset no longer exists (deleted by retention);
    `max_partition_fetch_bytes` is the most one fetch returns of a partition (aiokafka's default, 1 MiB).
    """
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation_level,
        auto_offset_reset=auto_offset_reset,
        max_partition_fetch_bytes=max_partition_fetch_bytes,
    )


def make_producer(settings: Settings, client_id: str, *, linger_ms: int = 10) -> Any:
    """The idempotent, all-replicas-acknowledged producer: retries never duplicate or reorder a partition."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
    )


def make_admin(settings: Settings, client_id: str = "copybot-topics") -> Any:
    """The admin client (topics and cluster metadata)."""
    return AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id=client_id)


async def partition_counts(admin: Any) -> dict[str, int]:
    """Partitions per existing topic, from the cluster metadata of *all* topics.

    Naming the topics would ask the broker to auto-create the missing ones.
    """
    return {
        t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(None) if t["error_code"] == 0
    }


async def topic_partitions(
    settings: Settings, topics: Iterable[str], timeout_s: float
) -> list[TopicPartition]:
    """Every partition of `topics` (full names), waiting up to `timeout_s` for them to appear in the metadata.

    Raises :class:`~streams.errors.KafkaUnavailable` when Kafka cannot be reached or a topic never appears.
    """
    names = list(topics)
    admin = make_admin(settings, "copybot-metadata")
    with kafka_errors(f"cannot read the cluster metadata from Kafka at {settings.bootstrap}"):
        try:
            await admin.start()
            deadline = time.monotonic() + timeout_s
            while True:
                counts = await partition_counts(admin)
                missing = [name for name in names if not counts.get(name)]
                if not missing:
                    return [TopicPartition(name, p) for name in names for p in range(counts[name])]
                if time.monotonic() > deadline:
                    raise KafkaUnavailable(f"topic {missing[0]} has no partitions in the cluster metadata")
                await asyncio.sleep(METADATA_POLL_S)  # polling the broker for a condition, with a deadline
        finally:
            await admin.close()


async def assign_all(
    consumer: Any, settings: Settings, topics: Iterable[str], timeout_s: float = 30.0
) -> list[TopicPartition]:
    """Assign every partition of `topics` (full names) to a started `consumer`; returns them, sorted."""
    tps = await topic_partitions(settings, topics, timeout_s)
    consumer.assign(tps)
    return tps


async def at_end(consumer: Any, ends: dict[TopicPartition, int]) -> bool:
    """Whether `consumer` has read every partition of `ends` up to its end offset."""
    return all([await consumer.position(tp) >= end for tp, end in ends.items()])


async def read_to_end(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record (aiokafka ``ConsumerRecord``) of `topic` (a full name) up to its end when called.

    Raises ``TimeoutError`` when that takes longer than `timeout_s`.
    """
    consumer = make_consumer(settings, isolation_level="read_uncommitted")
    deadline = time.monotonic() + timeout_s
    with kafka_errors(f"cannot read {topic} from Kafka at {settings.bootstrap}"):
        await consumer.start()
    try:
        tps = await assign_all(consumer, settings, [topic], timeout_s)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        while not await at_end(consumer, ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out reading {topic} to its end")
            for batch in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()
