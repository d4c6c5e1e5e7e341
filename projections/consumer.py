"""``copybot project``: the projection consumer — copy attempts, config changes and snapshots into SQL.

A plain aiokafka consumer (no Faust, no consumer group): it is assigned every partition of copy-attempts,
config-changes and portfolio-snapshots, seeks each to the offset stored in the database (or the
beginning), and processes ``getmany`` batches. Each batch is decoded strictly, folded into row changes
(:mod:`projections.rows`) and written with the offsets it consumed in **one transaction**
(:mod:`projections.store`), so a crash at any point neither loses nor double-counts anything: the
restarted consumer resumes from the offsets committed with the rows.

A message that does not decode is skipped (the worker has dead-lettered it already), and its offset
still advances. ``--once`` stops when every partition has reached the end offset seen at start;
``--rebuild`` empties the tables first and re-consumes everything.

From code (tests, the demo)::

    result = asyncio.run(project(Settings.from_env(), "out/copybot.db", once=True))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from models.events import ConfigChange, CopyAttempt, PortfolioSnapshot
from projections.rows import BatchProjection, SnapshotKey, snapshot_row
from projections.store import DEFAULT_DB, Offsets, ProjectionStore
from streams.kafka import (
    TopicPartition,
    assign_all,
    ensure_topics,
    make_consumer,
)
from streams.serde import DecodeError, decode_event
from streams.settings import CONFIG_CHANGES, COPY_ATTEMPTS, SNAPSHOTS, Settings

PROJECTED = (COPY_ATTEMPTS, CONFIG_CHANGES, SNAPSHOTS)
"""The topics the projection consumes (base names)."""
MAX_RECORDS = 5_000
"""Messages per batch (per transaction) at most."""
_ATTEMPT = TypeAdapter(CopyAttempt).validator.validate_json


@dataclass(slots=True)
class ProjectionResult:
    """What a projection run consumed."""

    batches: int = 0
    messages: int = 0
    attempts: int = 0
    duplicate_attempts: int = 0
    snapshots: int = 0
    config_changes: int = 0
    undecodable: int = 0
    offsets: Offsets = field(default_factory=dict)

    def describe(self) -> str:
        return (
            f"{self.messages:,} messages in {self.batches:,} batches: {self.attempts:,} new copy attempts "
            f"({self.duplicate_attempts:,} redelivered), {self.snapshots:,} snapshots, "
            f"{self.config_changes:,} config changes, {self.undecodable:,} undecodable (skipped)"
        )


def decode_attempt(raw: bytes) -> CopyAttempt:
    """Strictly decode a copy attempt (camelCase only, as emitted); raises ``ValidationError``."""
    return _ATTEMPT(raw, by_alias=True, by_name=False)  # type: ignore[no-any-return]


Decoded = tuple[str, int, int, Any, str]
"""(base topic, partition, offset, decoded event, the raw JSON text)."""


def decode_batch(
    batch: dict[TopicPartition, list[Any]], base_of: dict[str, str], result: ProjectionResult
) -> tuple[list[Decoded], Offsets]:
    """Decode a ``getmany`` batch; undecodable messages are counted and skipped (offsets still advance)."""
    decoded: list[Decoded] = []
    offsets: Offsets = {}
    for tp, records in batch.items():
        base = base_of[tp.topic]
        for record in records:
            offsets[(tp.topic, tp.partition)] = record.offset + 1
            result.messages += 1
            value = record.value
            try:
                if value is None:
                    raise DecodeError("empty message")
                event: Any = decode_attempt(value) if base == COPY_ATTEMPTS else decode_event(value)
                text = value.decode()
            except (DecodeError, ValidationError, UnicodeDecodeError):
                result.undecodable += 1
                continue
            wanted = {SNAPSHOTS: PortfolioSnapshot, CONFIG_CHANGES: ConfigChange}.get(base, CopyAttempt)
            if not isinstance(event, wanted):  # a valid event on the wrong topic: the worker ignores it
                result.undecodable += 1
                continue
            decoded.append((base, tp.partition, record.offset, event, text))
    return decoded, offsets


def project_batch(store: ProjectionStore, decoded: list[Decoded], offsets: Offsets) -> ProjectionResult:
    """Fold decoded messages into row changes and write them with `offsets` in one transaction."""
    counts = ProjectionResult()
    attempt_ids = [e.attempt_id for base, _, _, e, _ in decoded if base == COPY_ATTEMPTS]
    leaders: set[str] | None = {e.followed_user_id for base, _, _, e, _ in decoded if base == COPY_ATTEMPTS}
    snapshot_keys: set[SnapshotKey] = set()
    for base, partition, offset, event, _ in decoded:
        if base == SNAPSHOTS:
            key = snapshot_row(event, partition, offset).key
            snapshot_keys.add(key)
            if leaders is not None and key[1]:
                leaders.add(key[1])
        elif base == CONFIG_CHANGES:
            leaders = None  # a config change may touch every leader's configured columns
    with store.batch() as tx:
        projection = BatchProjection(tx.load(attempt_ids, leaders, snapshot_keys))
        for base, partition, offset, event, text in decoded:
            if base == COPY_ATTEMPTS:
                if projection.attempt(event, text, partition, offset):
                    counts.attempts += 1
            elif base == SNAPSHOTS:
                projection.snapshot(event, partition, offset)
                counts.snapshots += 1
            else:
                projection.config_change(event, text, partition, offset)
                counts.config_changes += 1
        changes = projection.changes()
        counts.duplicate_attempts = changes.duplicate_attempts
        tx.write(changes, offsets)
    return counts


async def project(
    settings: Settings,
    db: str = DEFAULT_DB,
    *,
    rebuild: bool = False,
    once: bool = False,
    stop: asyncio.Event | None = None,
    max_records: int = MAX_RECORDS,
    on_batch: Callable[[ProjectionResult], None] | None = None,
) -> ProjectionResult:
    """Run the projection into `db` until `stop` is set (or, with `once`, until caught up).

    Raises :class:`projections.store.StoreError` for an unusable database and ``KafkaError``/``OSError``
    when Kafka cannot be reached.
    """
    store = ProjectionStore(db)
    try:
        store.create_schema()
        if rebuild:
            store.reset()
        stored = store.offsets()
        await ensure_topics(settings)  # never let a metadata request auto-create a topic with 1 partition
        base_of = {settings.topic(name): name for name in PROJECTED}
        # auto_offset_reset: a stored offset already deleted by retention reads from the oldest kept
        consumer = make_consumer(settings, "copybot-projection", auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = await assign_all(consumer, settings, sorted(base_of), timeout_s=30)
            for tp in tps:
                if (tp.topic, tp.partition) in stored:
                    consumer.seek(tp, stored[(tp.topic, tp.partition)])
                else:
                    await consumer.seek_to_beginning(tp)
            ends = await consumer.end_offsets(tps) if once else {}
            return await _consume(consumer, store, tps, ends, base_of, once, stop, max_records, on_batch)
        finally:
            await consumer.stop()
    finally:
        store.close()


async def _consume(
    consumer: Any,
    store: ProjectionStore,
    tps: list[TopicPartition],
    ends: dict[TopicPartition, int],
    base_of: dict[str, str],
    once: bool,
    stop: asyncio.Event | None,
    max_records: int,
    on_batch: Callable[[ProjectionResult], None] | None,
) -> ProjectionResult:
    result = ProjectionResult()
    while not (stop is not None and stop.is_set()):
        if once and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
            break
        batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
        if not batch:
            continue
        decoded, offsets = decode_batch(batch, base_of, result)
        counts = project_batch(store, decoded, offsets)
        result.batches += 1
        result.attempts += counts.attempts
        result.duplicate_attempts += counts.duplicate_attempts
        result.snapshots += counts.snapshots
        result.config_changes += counts.config_changes
        result.offsets.update(offsets)
        if on_batch is not None:
            on_batch(result)
    return result


if __name__ == "__main__":  # ``python -m projections.consumer`` (the same as ``copybot project``)
    from projections.cli import project_main

    raise SystemExit(project_main())
