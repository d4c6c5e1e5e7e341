"""``copybot project``: the projection consumer — copy attempts, config changes, snapshots and book events
(leaderBook, positionSettled, orderExpired, orderUpdated) into SQL.

A plain aiokafka consumer (no Faust, no consumer group): it is assigned every partition of copy-attempts,
config-changes, portfolio-snapshots and book-events, seeks each to the offset stored in the
database (or the beginning), and processes ``getmany`` batches. Each batch is decoded strictly, folded into
row changes (:mod:`projections.rows`) and written with the offsets it consumed in **one transaction**
(:mod:`projections.store`), so a crash at any point neither loses nor double-counts anything: the
restarted consumer resumes from the offsets committed with the rows.

A message that does not decode is skipped (the worker has dead-lettered it already), and its offset
still advances. ``--once`` stops when every partition has reached the end offset seen at start;
``--rebuild`` drops and recreates the tables first (also those an older copybot made) and re-consumes
everything.

From code (tests, the demo)::

    result = asyncio.run(project(Settings.from_env(), "out/copybot.db", once=True))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args

from pydantic import Field, TypeAdapter, ValidationError

from models.events import ConfigChange, CopyAttempt, OrderUpdated, PortfolioSnapshot
from projections.rows import BatchProjection, BookEvent, OrderKey, SnapshotKey, snapshot_row
from projections.store import DEFAULT_DB, Offsets, ProjectionStore
from streams.kafka import (
    TopicPartition,
    assign_all,
    ensure_topics,
    make_consumer,
)
from streams.serde import DecodeError, decode_event
from streams.settings import CONFIG_CHANGES, COPY_ATTEMPTS, SNAPSHOTS, Settings
from streams.topology import BOOK_EVENTS

PROJECTED = (COPY_ATTEMPTS, CONFIG_CHANGES, SNAPSHOTS, BOOK_EVENTS)
"""The topics the projection consumes (base names). Not the executions: the core outputs the state of every
order it changed (orderUpdated on book-events), which is what the orders table stores."""
MAX_RECORDS = 5_000
"""Messages per batch (per transaction) at most."""
_ATTEMPT = TypeAdapter(CopyAttempt).validator.validate_json
_BOOK_EVENT = TypeAdapter(Annotated[BookEvent, Field(discriminator="kind")]).validator.validate_json
WANTED: dict[str, tuple[type, ...]] = {
    COPY_ATTEMPTS: (CopyAttempt,),
    CONFIG_CHANGES: (ConfigChange,),
    SNAPSHOTS: (PortfolioSnapshot,),
    BOOK_EVENTS: get_args(BookEvent),
}
"""The event types each projected topic carries; anything else on it is skipped as the worker skips it."""


@dataclass(slots=True)
class ProjectionResult:
    """What a projection run consumed."""

    batches: int = 0
    messages: int = 0
    attempts: int = 0
    duplicate_attempts: int = 0
    snapshots: int = 0
    config_changes: int = 0
    book_events: int = 0
    undecodable: int = 0
    offsets: Offsets = field(default_factory=dict)

    def describe(self) -> str:
        return (
            f"{self.messages:,} messages in {self.batches:,} batches: {self.attempts:,} new copy attempts "
            f"({self.duplicate_attempts:,} redelivered), {self.snapshots:,} snapshots, "
            f"{self.config_changes:,} config changes, {self.book_events:,} book events, "
            f"{self.undecodable:,} undecodable (skipped)"
        )


def decode_attempt(raw: bytes) -> CopyAttempt:
    """Strictly decode a copy attempt (camelCase only, as emitted); raises ``ValidationError``."""
    return _ATTEMPT(raw, by_alias=True, by_name=False)  # type: ignore[no-any-return]


def decode_book_event(raw: bytes) -> BookEvent:
    """Strictly decode a book event (leaderBook, positionSettled, orderExpired, orderUpdated); raises
    ``ValidationError``."""
    return _BOOK_EVENT(raw, by_alias=True, by_name=False)  # type: ignore[no-any-return]


def decode_output(base: str, raw: bytes) -> Any:
    """Decode a message of projected topic `base`: outputs strictly, inputs as the worker does."""
    if base == COPY_ATTEMPTS:
        return decode_attempt(raw)
    if base == BOOK_EVENTS:
        return decode_book_event(raw)
    return decode_event(raw)


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
                event = decode_output(base, value)
                text = value.decode()
            except (DecodeError, ValidationError, UnicodeDecodeError):
                result.undecodable += 1
                continue
            if not isinstance(event, WANTED[base]):  # a valid event on the wrong topic: the worker ignores it
                result.undecodable += 1
                continue
            decoded.append((base, tp.partition, record.offset, event, text))
    return decoded, offsets


@dataclass(slots=True)
class BatchKeys:
    """The keys of the stored rows a batch reads (:meth:`projections.store.BatchTransaction.load`)."""

    attempt_ids: set[str] = field(default_factory=set)
    leaders: set[str] | None = field(default_factory=set)
    """None: every leader (a config change may touch every leader's configured columns)."""
    snapshots: set[SnapshotKey] = field(default_factory=set)
    orders: set[OrderKey] = field(default_factory=set)

    def leader(self, leader_id: str) -> None:
        if self.leaders is not None and leader_id:
            self.leaders.add(leader_id)


def batch_keys(decoded: list[Decoded]) -> BatchKeys:
    keys = BatchKeys()
    for base, partition, offset, event, _ in decoded:
        if base == SNAPSHOTS:
            key = snapshot_row(event, partition, offset).key
            keys.snapshots.add(key)
            keys.leader(key[1])
        elif base == CONFIG_CHANGES:
            keys.leaders = None
        else:
            keys.leader(event.followed_user_id)
            if base == COPY_ATTEMPTS:
                keys.attempt_ids.add(event.attempt_id)
            elif isinstance(event, OrderUpdated):
                keys.orders.add((event.attempt_id, event.followed_user_id))
    return keys


def _fold(projection: BatchProjection, decoded: list[Decoded], counts: ProjectionResult) -> None:
    for base, partition, offset, event, text in decoded:
        if base == COPY_ATTEMPTS:
            counts.attempts += projection.attempt(event, text, partition, offset)
        elif base == SNAPSHOTS:
            projection.snapshot(event, partition, offset)
            counts.snapshots += 1
        elif base == CONFIG_CHANGES:
            projection.config_change(event, text, partition, offset)
            counts.config_changes += 1
        else:
            projection.book_event(event, partition, offset)
            counts.book_events += 1


def project_batch(store: ProjectionStore, decoded: list[Decoded], offsets: Offsets) -> ProjectionResult:
    """Fold decoded messages into row changes and write them with `offsets` in one transaction."""
    counts = ProjectionResult()
    keys = batch_keys(decoded)
    with store.batch() as tx:
        projection = BatchProjection(tx.load(keys.attempt_ids, keys.leaders, keys.snapshots, keys.orders))
        _fold(projection, decoded, counts)
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
        if rebuild:
            store.reset()
        else:
            store.create_schema()
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
        result.book_events += counts.book_events
        result.offsets.update(offsets)
        if on_batch is not None:
            on_batch(result)
    return result


if __name__ == "__main__":  # ``python -m projections.consumer`` (the same as ``copybot project``)
    from projections.cli import project_main

    raise SystemExit(project_main())
