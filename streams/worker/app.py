"""``copybot worker``: the live decision processor, a Faust app over a real Kafka broker.

Topology (N = settings.partitions; every leader-keyed topic has N partitions):

- ``leader-trades`` is each decision partition's **log**. Besides the leaders' trades it carries, in
  the same partitions, the worker's wall-clock ticks and copies of every snapshot and config change, so
  a partition's order — and so its decisions — is fixed in Kafka and reproducible after any restart.
- ``forward_snapshots`` copies each valid portfolioSnapshot into the log partition of its leader (a whole
  EXEC_GLOBAL snapshot into every partition); ``forward_config`` validates each config change once
  (reporting ``configRejected`` / ``configWarning`` on ``config-reports``) and copies every well-formed
  change into every partition, where the core applies it the same way. Copies carry a ``copybot-source``
  header naming the original message.
- ``decide`` runs the decision core (:func:`models.engine.process`) per partition and emits copy attempts
  keyed by leader. Undecodable input goes to ``dead-letters`` with the raw bytes and the reason.

State: per-leader records and one record per partition (clock, config, equity, the last applied log
offset) live in changelog-backed Faust tables. Delivery is at-least-once made effectively-once: a batch's
attempts are sent and acknowledged before its state is written, the state records the last applied
offset, and Faust flushes the producer before it commits offsets. So after a crash a redelivered event
is skipped if its state change was saved, or processed again (emitting attempts with the same ids and
contents) if it was not. Agents run with concurrency 1 (faust-streaming #606).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import orjson

from models.codec import key_time_of, leader_from_json, leader_to_json, partition_from_json, partition_to_json
from models.config import ConfigStore, apply_change
from models.engine import process
from models.events import ConfigChange, ConfigRejected, ConfigWarning, PortfolioSnapshot
from models.state import Journal, PartitionState
from streams.serde import DecodeError, dead_letter, decode_event, decode_expecting, encode
from streams.settings import (
    CONFIG_CHANGES,
    CONFIG_REPORTS,
    COPY_ATTEMPTS,
    DEAD_LETTERS,
    SNAPSHOTS,
    SOURCE_HEADER,
    TRADES,
    Settings,
)
from streams.topology import copy_targets

log = logging.getLogger("copybot.worker")

EXACTLY_ONCE_REFUSED = (
    "copybot worker: COPYBOT_GUARANTEE=exactly_once is not supported. The worker is already "
    "effectively-once without Kafka transactions (attempts are acknowledged before the state that "
    "produced them is saved, the state records the last applied offset, attemptIds are deterministic), "
    "and it sends in batches through the producer directly, which Faust's transactional mode does not "
    "cover. See README, 'Delivery'."
)

BATCH_MAX = 4_000
"""Events taken from the log per batch: state is written once per leader per batch."""
BATCH_WITHIN_S = 0.02


def partition_key(partition: int) -> bytes:
    """Table key of a partition's own record (clock, config, equity, last applied offset)."""
    return b"P:%d" % partition


def leader_key(leader_id: str) -> bytes:
    return b"L:" + leader_id.encode()


def trade_id_key(leader_id: str, trade_id: str) -> bytes:
    return b"S:" + leader_id.encode() + b"\x1f" + trade_id.encode()


def group_key_key(leader_id: str, base: str) -> bytes:
    return b"K:" + leader_id.encode() + b"\x1f" + base.encode()


def state_records(
    partition: int, part: LivePartition, dirty: set[str]
) -> Iterator[tuple[bytes, bytes | None]]:
    """Table records for what a batch changed: each dirty leader's core record, one record per trade id
    or group key that was added or forgotten (None: delete), and last the partition's own record."""
    state = part.state
    for leader_id in sorted(dirty):
        leader = state.leaders.get(leader_id)
        if leader is None:
            continue
        yield leader_key(leader_id), orjson.dumps(leader_to_json(leader, with_memory=False))
        journal = leader.journal
        if journal is None:
            continue
        for trade_id in sorted(journal.trade_ids):
            seen_at = leader.seen_trade_ids.get(trade_id)
            yield trade_id_key(leader_id, trade_id), None if seen_at is None else b"%d" % seen_at
        for base in sorted(journal.group_keys):
            count = leader.used_group_keys.get(base)
            yield group_key_key(leader_id, base), None if count is None else b"%d" % count
        leader.journal = Journal()
    yield partition_key(partition), orjson.dumps(partition_to_json(state, part.offset))


def restore_partition(store: Any, record: bytes) -> tuple[PartitionState, int]:
    """Rebuild a partition from its record and the records of its leaders in the table `store`."""
    data = orjson.loads(record)
    wanted = set(data["leaders"])
    seen: dict[str, list[list[Any]]] = defaultdict(list)
    keys: dict[str, list[list[Any]]] = defaultdict(list)
    for key, value in store.items():
        kind, _, rest = key.partition(b":")
        if kind not in (b"S", b"K"):
            continue
        leader_id, _, item = rest.decode().partition("\x1f")
        if leader_id not in wanted:
            continue
        if kind == b"S":
            seen[leader_id].append([int(value), item])
        else:
            keys[leader_id].append([key_time_of(item), item, int(value)])
    leaders = {}
    for leader_id in data["leaders"]:
        core = store.get(leader_key(leader_id))
        if core is None:
            continue
        leader_data = orjson.loads(core)
        leader_data["seen"] = sorted(seen[leader_id])
        leader_data["keys"] = sorted(keys[leader_id])
        leaders[leader_id] = leader_from_json(leader_data)
    return partition_from_json(data, leaders)


@dataclass
class LivePartition:
    """One decision partition held in memory between batches."""

    state: PartitionState
    offset: int
    record: bytes | None
    """The partition record as last written by this worker; another value in the table means the
    partition moved (a rebalance) and must be reloaded."""


@dataclass
class Counters:
    """What the worker did since it started (logged periodically)."""

    events: int = 0
    attempts: int = 0
    dead_letters: int = 0
    skipped_redeliveries: int = 0


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app: topics, tables, the three agents and the ticker."""
    settings.worker_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        datadir=str(settings.worker_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        processing_guarantee=settings.guarantee,
        web_enabled=False,
        producer_linger_ms=5,
        producer_max_batch_size=262_144,  # a batch must stay under the 1 MiB request limit
        stream_buffer_maxsize=16_384,
        broker_commit_every=20_000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        table_cleanup_interval=3600.0,
    )
    n = settings.partitions

    def topic(name: str, partitions: int) -> faust.TopicT:
        return app.topic(
            settings.topic(name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )

    trades_topic = topic(TRADES, n)
    snapshots_topic = topic(SNAPSHOTS, n)
    config_topic = topic(CONFIG_CHANGES, 1)
    trades_name = settings.topic(TRADES)
    attempts_name = settings.topic(COPY_ATTEMPTS)
    dead_letters_name = settings.topic(DEAD_LETTERS)
    reports_name = settings.topic(CONFIG_REPORTS)

    raw: faust.Schema[bytes, bytes] = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    # Writes go straight to the changelog partition of the log partition they belong to (see _persist);
    # Faust restores the tables from those changelogs on start and on rebalance.
    state_table = app.Table("partition-state", partitions=n, key_type=bytes, value_type=bytes, schema=raw)
    config_table = app.Table("config-store", partitions=1, key_type=bytes, value_type=bytes, schema=raw)
    live: dict[int, LivePartition] = {}
    counters = Counters()

    async def send_all(messages: Iterable[tuple[str, bytes | None, bytes, int | None, Any]]) -> None:
        """Send messages in one go (the producer batches them) and wait until all are acknowledged."""
        futures: list[Awaitable[Any]] = []
        for topic_name, key, value, partition, headers in messages:
            futures.append(await app.producer.send(topic_name, key, value, partition, None, headers))
        if futures:
            await asyncio.gather(*futures)

    def load(partition: int) -> LivePartition:
        """The partition's state: cached, or rebuilt from the table (first use, or after a rebalance)."""
        store = state_table.data
        record = store.get(partition_key(partition))
        cached = live.get(partition)
        if cached is not None and cached.record == record:
            return cached
        if record is None:
            loaded = LivePartition(PartitionState(), -1, None)
        else:
            loaded = LivePartition(*restore_partition(store, record), record)
            log.info(
                "partition %d restored: %d leaders, offset %d",
                partition,
                len(loaded.state.leaders),
                loaded.offset,
            )
        for leader in loaded.state.leaders.values():
            leader.journal = Journal()
        live[partition] = loaded
        return loaded

    async def persist(partition: int, part: LivePartition, dirty: set[str]) -> list[Awaitable[Any]]:
        """Write the batch's state changes to the partition's changelog (and the local table)."""
        changelog = state_table.changelog_topic.get_topic_name()
        records = list(state_records(partition, part, dirty))
        store = state_table.data
        futures = []
        for key, value in records:
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
            futures.append(await app.producer.send(changelog, key, value, partition, None, None))
        part.record = records[-1][1]
        return futures

    @app.agent(trades_topic, concurrency=1)
    async def decide(stream: Any) -> None:  # a faust Stream (its type stub lacks take_events)
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            by_partition: dict[int, list[Any]] = defaultdict(list)
            for event in events:
                by_partition[event.message.partition].append(event)
            outgoing: list[tuple[str, bytes | None, bytes, int | None, Any]] = []
            touched: list[tuple[int, LivePartition, set[str]]] = []
            for partition, batch in by_partition.items():
                part = load(partition)
                dirty = _decide_batch(part, batch, outgoing, counters, attempts_name, dead_letters_name)
                touched.append((partition, part, dirty))
            await send_all(outgoing)  # attempts acknowledged before the state that produced them is saved
            saving: list[Awaitable[Any]] = []
            for partition, part, dirty in touched:
                saving += await persist(partition, part, dirty)
            await asyncio.gather(*saving)

    @app.agent(snapshots_topic, concurrency=1)
    async def forward_snapshots(stream: Any) -> None:  # a faust Stream (its type stub lacks take_events)
        async for events in stream.take_events(1_000, within=BATCH_WITHIN_S):
            outgoing: list[tuple[str, bytes | None, bytes, int | None, Any]] = []
            for event in events:
                message = event.message
                try:
                    snapshot = decode_expecting(message.value, PortfolioSnapshot)
                except DecodeError as exc:
                    outgoing.append(_dead(message, str(exc), dead_letters_name, counters))
                    continue
                source = _source_header(message)
                targets = copy_targets(snapshot, message.partition, n)
                outgoing += [(trades_name, message.key, message.value, p, source) for p in targets]
            await send_all(outgoing)

    @app.agent(config_topic, concurrency=1)
    async def forward_config(stream: Any) -> None:  # a faust Stream (its type stub lacks take_events)
        async for events in stream.take_events(100, within=BATCH_WITHIN_S):
            raw_store = config_table.data.get(b"store")
            store, applied_offset = ConfigStore(), -1
            if raw_store is not None:
                saved = orjson.loads(raw_store)
                store, applied_offset = ConfigStore.from_json(saved["store"]), saved["offset"]
            outgoing: list[tuple[str, bytes | None, bytes, int | None, Any]] = []
            for event in events:
                message = event.message
                if message.offset <= applied_offset:
                    counters.skipped_redeliveries += 1
                    continue
                applied_offset = message.offset
                try:
                    change = decode_expecting(message.value, ConfigChange)
                except DecodeError as exc:
                    outgoing.append(_dead(message, str(exc), dead_letters_name, counters))
                    continue
                outcome = apply_change(store, change)
                report: ConfigRejected | ConfigWarning | None = None
                if outcome.store is None:
                    report = ConfigRejected(change_id=change.change_id, errors=outcome.errors)
                    log.warning("config change %s rejected: %s", change.change_id, "; ".join(outcome.errors))
                else:
                    store = outcome.store
                    if outcome.warnings:
                        report = ConfigWarning(change_id=change.change_id, warnings=outcome.warnings)
                if report is not None:
                    outgoing.append((reports_name, change.change_id.encode(), encode(report), None, None))
                outgoing += [
                    (trades_name, message.key, message.value, p, _source_header(message)) for p in range(n)
                ]
            await send_all(outgoing)
            saved_store = orjson.dumps({"store": store.to_json(), "offset": applied_offset})
            config_table.data[b"store"] = saved_store
            changelog = config_table.changelog_topic.get_topic_name()
            await (await app.producer.send(changelog, b"store", saved_store, 0, None, None))

    if settings.ticks:

        @app.timer(interval=settings.tick_interval_ms / 1000)  # type: ignore[untyped-decorator]
        async def tick() -> None:
            """Time passes in every partition, in the same log as the trades (SPEC 8)."""
            value = orjson.dumps({"kind": "tick", "nowMs": int(time.time() * 1000)})
            await send_all((trades_name, None, value, p, None) for p in range(n))

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def report_progress() -> None:
        log.info(
            "processed %d events, %d attempts, %d dead letters, %d redeliveries skipped",
            counters.events,
            counters.attempts,
            counters.dead_letters,
            counters.skipped_redeliveries,
        )

    app.copybot_agents = (decide, forward_snapshots, forward_config)  # type: ignore[attr-defined]
    return app


def _source_header(message: Any) -> list[tuple[str, bytes]]:
    """The header naming the original of a message the worker copies into the decision log."""
    return [(SOURCE_HEADER, f"{message.topic}:{message.partition}:{message.offset}".encode())]


def _dead(
    message: Any, error: str, dead_letters_name: str, counters: Counters, at_ms: int | None = None
) -> tuple[str, None, bytes, None, None]:
    """A dead letter for `message`, at the partition clock (the decision log) or the wall clock."""
    counters.dead_letters += 1
    at = int(time.time() * 1000) if at_ms is None else at_ms
    letter = dead_letter(
        message.topic, message.partition, message.offset, message.key, message.value, error, at
    )
    return (dead_letters_name, None, encode(letter), None, None)


def _decide_batch(
    part: LivePartition,
    batch: Sequence[Any],
    outgoing: list[tuple[str, bytes | None, bytes, int | None, Any]],
    counters: Counters,
    attempts_name: str,
    dead_letters_name: str,
) -> set[str]:
    """Run one partition's events through the core; returns the leaders whose state changed."""
    state = part.state
    dirty: set[str] = set()
    for event in batch:
        message = event.message
        if message.offset <= part.offset:  # applied before a crash: its state change is already saved
            counters.skipped_redeliveries += 1
            continue
        part.offset = message.offset
        counters.events += 1
        try:
            decoded = decode_event(message.value)
        except DecodeError as exc:
            outgoing.append(_dead(message, str(exc), dead_letters_name, counters, state.clock_ms))
            continue
        if decoded.kind in ("leaderTrade", "portfolioSnapshot"):
            leader_of_event = decoded.followed_user_id
            if leader_of_event is not None:
                dirty.add(leader_of_event)
        for output in process(state, decoded):
            if isinstance(output, dict):  # config reports come from forward_config, once
                leader_id = output["followedUserId"]
                dirty.add(leader_id)
                outgoing.append((attempts_name, leader_id.encode(), orjson.dumps(output), None, None))
                counters.attempts += 1
    return dirty


def run_worker(loglevel: str = "info") -> int:
    """Create the topics if needed and run a Faust worker until it is stopped."""
    from streams.kafka.admin import create_topics

    settings = Settings.from_env()
    if settings.guarantee == "exactly_once":
        print(EXACTLY_ONCE_REFUSED, file=sys.stderr)
        return 2
    asyncio.run(create_topics(settings))
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0
