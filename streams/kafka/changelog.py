"""A table changelog's partitions read straight from Kafka: each key's latest value (the worker's restore).

The live worker restores a decision partition from what its changelog partition holds in Kafka, not from
Faust's in-process table store (docs/failover.md, "Restore reads Kafka"). :func:`latest_values` reads the
partitions from their beginning up to the high-water marks taken when it is called and keeps each key's
last value; a tombstone (a record whose value is None) removes its key.

The high-water mark is the offset after the last record every in-sync replica has (read_uncommitted:
there are no transactions here, so no last-stable offset below it). A record the worker's producer had
acknowledged (``acks=all``) is below it, so a restore sees every batch the worker saved before it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from streams.kafka.connect import TopicPartition, make_consumer
from streams.kafka.errors import kafka_errors
from streams.settings import Settings

__all__ = ["latest_values"]

FETCH_BYTES = 16 * 1024 * 1024
"""Bytes per partition per fetch (aiokafka's default is 1 MiB): a whale's partition is read in a few."""


async def latest_values(
    settings: Settings, topic: str, partitions: Iterable[int], timeout_s: float = 60.0
) -> dict[int, dict[bytes, bytes]]:
    """For each partition of `topic` (a full name), every key's latest value up to the partition's
    high-water mark when called (tombstoned keys absent).

    Raises :class:`~streams.errors.KafkaUnavailable` when Kafka cannot be reached, ``TimeoutError`` when
    reading takes longer than `timeout_s`.
    """
    tps = [TopicPartition(topic, p) for p in sorted(set(partitions))]
    latest: dict[int, dict[bytes, bytes]] = {tp.partition: {} for tp in tps}
    if not tps:
        return latest
    deadline = time.monotonic() + timeout_s
    consumer = make_consumer(
        settings,
        "copybot-restore",
        isolation_level="read_uncommitted",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=FETCH_BYTES,
    )
    with kafka_errors(f"cannot read {topic} from Kafka at {settings.bootstrap}"):
        await consumer.start()
        try:
            consumer.assign(tps)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            await consumer.seek_to_beginning(*tps)
            pending = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"timed out reading {topic} partitions {[tp.partition for tp in tps]}")
                fetched = await consumer.getmany(*pending, timeout_ms=500, max_records=50_000)
                for tp, records in fetched.items():
                    _apply(latest[tp.partition], records, ends[tp])
                pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
        finally:
            await consumer.stop()
    return latest


def _apply(values: dict[bytes, bytes], records: list[Any], end: int) -> None:
    """Fold records (in offset order) into `values`, stopping at the high-water mark `end`."""
    for record in records:
        if record.offset >= end:
            break
        key, value = record.key, record.value
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
