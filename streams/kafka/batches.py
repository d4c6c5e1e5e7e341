"""Send many messages as one aiokafka producer batch per topic partition (the worker's output path).

``AIOKafkaProducer.send`` costs several µs per message (metadata wait, serialization, partitioning,
a future each); a batch built with ``create_batch`` / ``BatchBuilder.append`` and queued with
``send_batch`` costs about one, and gives one delivery future per batch. The producer sends one
batch per partition at a time (aiokafka/producer/sender.py:139-150, ``drain_by_nodes`` skips muted,
i.e. in-flight, partitions), so batches queued for one partition land in the order they were queued.

A message without a partition goes where ``AIOKafkaProducer.send`` would put it: the producer's own
partitioner through its private ``_partition`` (aiokafka/producer/producer.py:412-424; keyed: murmur2
of the key over all partitions, keyless: a random available one), after ``partitions_for`` loaded the
topic's metadata (producer.py:386-388). ``send_batch`` waits while an earlier batch of the same
partition is still queued (aiokafka/producer/message_accumulator.py:591-598), so each call queues at
most a few batches per partition. Tested in tests/unit/test_worker_hooks.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

Message = tuple[str, bytes | None, bytes | None, int | None, Any]
"""(topic, key, value, partition or None, headers or None)."""

_KEY_CACHE_LIMIT = 100_000


class BatchSender:
    """Queue messages on an ``AIOKafkaProducer`` in one batch per partition."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self._partition_of: dict[tuple[str, bytes], int] = {}

    async def queue(self, messages: Iterable[Message]) -> list[asyncio.Future[Any]]:
        """Queue `messages` (in order within each partition); returns one future per batch."""
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Any]]] = {}
        known = self._partition_of
        for topic, key, value, partition, headers in messages:
            if partition is None:
                # A key seen before keeps its partition (murmur2 over the topic's partition count, which
                # never shrinks); ``send_batch`` waits for the topic's metadata itself (producer.py:549-552).
                partition = known.get((topic, key)) if key is not None else None
                if partition is None:
                    partition = await self._partition(topic, key)
            group = groups.get((topic, partition))
            if group is None:
                group = groups[(topic, partition)] = []
            group.append((key, value, headers))
        futures: list[asyncio.Future[Any]] = []
        for (topic, partition), group in groups.items():
            futures += await self._send_group(topic, partition, group)
        return futures

    async def _partition(self, topic: str, key: bytes | None) -> int:
        # The topic's metadata is checked every time, not remembered: aiokafka replaces its topic map
        # wholesale on each metadata update (aiokafka/cluster.py:221-273), so a topic seen before can be
        # missing for a moment (a worker exited with "'NoneType' object is not iterable" from
        # producer.py:422 after a broker restart). A dict lookup when present.
        if self.producer.client.cluster.partitions_for_topic(topic) is None:
            await self.producer.partitions_for(topic)
        if key is None:
            return int(self.producer._partition(topic, None, None, None, None, None))
        cache = self._partition_of
        found = cache.get((topic, key))
        if found is None:
            if len(cache) >= _KEY_CACHE_LIMIT:
                cache.clear()
            found = cache[(topic, key)] = int(self.producer._partition(topic, None, key, None, key, None))
        return found

    async def _send_group(
        self, topic: str, partition: int, group: Sequence[tuple[bytes | None, bytes | None, Any]]
    ) -> list[asyncio.Future[Any]]:
        producer = self.producer
        futures: list[asyncio.Future[Any]] = []
        batch = producer.create_batch()
        for key, value, headers in group:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                if not batch.record_count():
                    raise ValueError(f"a message for {topic} does not fit into an empty producer batch")
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    raise ValueError(f"a message for {topic} does not fit into an empty producer batch")
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures


__all__ = ["BatchSender", "Message"]
