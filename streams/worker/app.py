"""``copybot worker``: the live decision processor, a Faust app over a real Kafka broker.

Topology (N = settings.partitions; every leader-keyed topic has N partitions):

- ``leader-trades`` is each decision partition's **log**. Besides the leaders' trades it carries, in
  the same partitions, the worker's wall-clock ticks and copies of every snapshot and config change, so
  a partition's order — and so its decisions — is fixed in Kafka and reproducible after any restart.
- ``forward_snapshots`` copies each valid portfolioSnapshot into the log partition of its leader (a whole
  EXEC_GLOBAL snapshot into every partition); ``forward_config`` validates each config change once
  (reporting ``configRejected`` / ``configWarning`` on ``config-reports``) and copies every well-formed
  change into every partition, where the core applies it the same way. Copies carry a ``copybot-source``
  header naming the original message. Repeated copies (after a crash) are harmless: the core applies a
  config change once, and a repeated snapshot changes nothing.
- ``decide`` runs the decision core per partition and emits copy attempts keyed by leader.

Delivery (the log is the truth): per batch, the attempts and dead letters are sent and acknowledged,
then the partition's state is saved atomically (:mod:`streams.worker.records`), then the batch's input
messages are acknowledged to Faust, which commits their offsets. The next batch is decided while that
runs in the background (``PIPELINED``); completions run one at a time in batch order, and a rebalance
or a stop waits for the one in flight before a partition's state is dropped.
Outputs go out as one producer batch per partition (:mod:`streams.kafka.batches`); the consumer hands over
whole fetched chunks (:mod:`streams.worker.consumer`). Any send failure or timeout stops the
worker (exit 70) instead of carrying on with state that is ahead of Kafka; a restart replays the log
from the saved state, emitting the same attempts again (same attemptIds, same contents). A watchdog
stops the worker (exit 75) when it has lag but makes no progress. Agents run with concurrency 1
(faust-streaming #606).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Any

import faust
import orjson

from models.config import ConfigStore, apply_change
from models.events import (
    ConfigChange,
    ConfigRejected,
    ConfigWarning,
    ExecutionReport,
    MarketResolved,
    PortfolioSnapshot,
)
from streams.kafka.batches import BatchSender
from streams.kafka.changelog import latest_values
from streams.kafka.codec import use_fast_lz4
from streams.serde import DecodeError, decode_expecting, encode
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
from streams.topology import BOOK_EVENTS, EXECUTIONS, MARKET_EVENTS, copy_targets
from streams.worker.batch import (
    Counters,
    LogGap,
    Outgoing,
    OutputTopics,
    dead_letter_message,
    decide_batch,
)
from streams.worker.consumer import BatchDrainConsumer, Chunk, sink_for
from streams.worker.consumer import install as install_consumer
from streams.worker.gcstats import GcPauses, tune_gc
from streams.worker.records import SavedPartition, batch_records, partition_key, restore

log = logging.getLogger("copybot.worker")

ASSIGNED_LINE = "assigned decision partitions"
"""Logged, with the partitions, when a rebalance gives this worker its decision partitions."""
EXIT_SEND_FAILED = 70
EXIT_RESTORE_FAILED = 71
EXIT_LOG_GAP = 72
EXIT_STALLED = 75

EXACTLY_ONCE_REFUSED = (
    "copybot worker: COPYBOT_GUARANTEE=exactly_once is not supported. The worker is already "
    "effectively-once without Kafka transactions (attempts are acknowledged before the state that "
    "produced them is saved, the state records the last applied offset, attemptIds are deterministic), "
    "and it sends in batches through the producer directly, which Faust's transactional mode does not "
    "cover. See README, 'Delivery'."
)

CopiedEvent = PortfolioSnapshot | ExecutionReport | MarketResolved
Sending = tuple[int, list[asyncio.Future[Any]]]
"""Messages queued on the producer: (watchdog token, delivery futures)."""
Save = tuple[list[Outgoing], dict[int, int]]
"""A batch's state records and the last log offset each partition's records cover."""

BATCH_MAX = 10_000
"""Most log messages decided per batch (a batch is whatever has arrived, so latency stays low)."""

FETCH_BYTES_PER_PARTITION = 8 * 1024 * 1024
"""Most a fetch returns of one partition. Faust's default (1 MiB, ~4,000 trades) gave a backlog in
batches of ~4,000 records, each paying a batch's fixed costs (state records, two round trips)."""
DECIDE_SLICE = 1_000
"""Messages decided between two turns of the event loop: deciding is synchronous, and while it runs
the producer cannot send the previous batch's records nor take their acknowledgements, so the
pipelined completion would otherwise only start once the next batch is decided."""

PIPELINED = True
"""Decide the next batch while the previous one completes in the background (decisions.md 36);
False completes each batch before the next is taken."""


GC_PAUSES = GcPauses()
"""The worker process's cycle-collector pauses (installed by :func:`run_worker`, logged with progress)."""


def fatal(code: int, reason: str) -> None:
    """Stop the worker at once with `code`: its in-memory state may be ahead of Kafka.

    Nothing of the current batch is acknowledged, so a restart replays it from the saved state.
    """
    log.critical("copybot worker stopping (exit %d): %s", code, reason)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


class Runtime:
    """The worker's moving parts shared by its agents and timers."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.counters = Counters()
        self.live: dict[int, SavedPartition] = {}
        self.last_progress = time.monotonic()
        self.applied: dict[int, int] = {}
        self.in_flight: asyncio.Task[None] | None = None
        """The decide agent's one batch completing in the background (:meth:`complete`)."""
        self._sender: BatchSender | None = None
        self._state_sender: BatchSender | None = None
        self._sends: dict[int, float] = {}
        self._next_send = 0

    @property
    def sending_since(self) -> float | None:
        """When the oldest send still waiting for Kafka's acknowledgement began (None: none)."""
        return min(self._sends.values(), default=None)

    def sender(self) -> BatchSender:
        """The batch sender over Faust's aiokafka producer (``Producer._producer``, set when the
        producer service starts: faust/transport/drivers/aiokafka.py:1174, 1382-1386)."""
        producer = self.app.producer._producer  # type: ignore[attr-defined]
        if self._sender is None or self._sender.producer is not producer:
            if producer is None:
                raise RuntimeError("Faust's producer is not started")
            self._sender = BatchSender(producer)
        return self._sender

    async def state_sender(self) -> BatchSender:
        """The batch sender of the state records: a second producer with Faust's producer settings
        (``Producer._new_producer``, faust/transport/drivers/aiokafka.py:1328-1338). aiokafka keeps one
        produce request in flight per broker (``drain_by_nodes(ignore_nodes=self._in_flight)``,
        aiokafka/producer/sender.py:139-142), so on one producer a batch's state records and the next
        batch's attempts went out one after the other; on two they are in flight together."""
        if self._state_sender is None:
            producer = self.app.producer._new_producer()  # type: ignore[attr-defined]
            await producer.start()
            self._state_sender = BatchSender(producer)
        return self._state_sender

    async def close(self) -> None:
        """Stop the state records' producer (after :meth:`settle`: nothing of it is in flight)."""
        if self._state_sender is not None:
            sender, self._state_sender = self._state_sender, None
            await sender.producer.stop()

    async def queue(self, messages: Iterable[Outgoing], sender: BatchSender | None = None) -> Sending:
        """Queue messages on a producer (Faust's by default; one batch per partition) without waiting
        for Kafka."""
        token = self._next_send = self._next_send + 1
        self._sends[token] = time.monotonic()
        try:
            return token, await (sender or self.sender()).queue(messages)
        except Exception as exc:  # any failure: Kafka has not got everything, so stop (see fatal)
            fatal(EXIT_SEND_FAILED, f"a send to Kafka failed: {exc!r}")
            raise  # not reached

    async def wait(self, sending: Sending) -> None:
        """Wait until Kafka acknowledged every message of `sending`; any failure stops the worker."""
        token, futures = sending
        try:
            if futures:
                await asyncio.wait_for(asyncio.gather(*futures), self.settings.send_timeout_s)
        except Exception as exc:  # any failure: Kafka has not got everything, so stop (see fatal)
            fatal(EXIT_SEND_FAILED, f"a send to Kafka failed: {exc!r}")
        finally:
            self._sends.pop(token, None)

    async def send_all(self, messages: Iterable[Outgoing]) -> None:
        """Send messages and wait until Kafka acknowledged every one; any failure stops the worker."""
        await self.wait(await self.queue(messages))

    async def load(self, partitions: Iterable[int], changelog: str) -> dict[int, SavedPartition]:
        """The partitions' states: cached, or restored (first use, after a rebalance) from their
        changelog partitions read straight from Kafka up to the high-water marks taken now — not from
        Faust's table store, which can hold a stale or mixed view of a partition that moved
        (docs/failover.md, "Restore reads Kafka"). The batch completing in the background, if any, is
        awaited first, so every record this worker saved before is acknowledged and below those marks."""
        wanted = list(partitions)
        if any(p not in self.live for p in wanted):
            # Every assigned partition not loaded yet, in one read: after a rebalance the first
            # batches hold a few partitions each, and each load waits for the batch in flight.
            missing = sorted(set(wanted).union(self.assigned()).difference(self.live))
            await self.settle()
            began = time.monotonic()
            try:
                values = await latest_values(self.settings, changelog, missing, self.settings.send_timeout_s)
            except Exception as exc:  # the state cannot be known: deciding on would be wrong
                fatal(EXIT_RESTORE_FAILED, f"reading partitions {missing} of {changelog} failed: {exc!r}")
                raise  # not reached
            read_s = time.monotonic() - began
            for partition in missing:
                self.live[partition] = self._restored(partition, values.pop(partition), read_s)
        return {p: self.live[p] for p in wanted}

    def assigned(self) -> set[int]:
        """The decision partitions (of leader-trades) assigned to this worker now."""
        name = self.settings.topic(TRADES)
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == name}

    def _restored(self, partition: int, values: dict[bytes, bytes], read_s: float) -> SavedPartition:
        began = time.monotonic()
        saved = restore(partition, values.get)
        if saved.offset >= 0:
            log.info(
                "partition %d restored: %d leaders, offset %d, batch %d (%d changelog keys read in "
                "%.2f s, restored in %.2f s)",
                partition,
                len(saved.state.leaders),
                saved.offset,
                saved.batch,
                len(values),
                read_s,
                time.monotonic() - began,
            )
        return saved

    def records(self, changelog: str, touched: list[tuple[int, SavedPartition, set[str]]]) -> Save:
        """Each touched partition's batch records (written by :meth:`save` to `changelog`), made right
        after the batch ran through the core."""
        outgoing: list[Outgoing] = []
        applied: dict[int, int] = {}
        for partition, saved, dirty in touched:
            for key, value in batch_records(partition, saved, dirty):
                outgoing.append((changelog, key, value, partition, None))  # type: ignore[arg-type]
            applied[partition] = saved.offset
        return outgoing, applied

    async def save(self, records: Save) -> None:
        """Write a batch's records to their changelog partitions. Call only once the previous batch's
        records are acknowledged (:func:`streams.worker.records.batch_records`). Faust's table store is
        not written: nothing reads it (:meth:`load` reads Kafka)."""
        outgoing, applied = records
        try:
            sender = await self.state_sender()
        except Exception as exc:  # no producer for the state: the batch cannot be saved
            fatal(EXIT_SEND_FAILED, f"starting the state records' producer failed: {exc!r}")
            raise  # not reached
        await self.wait(await self.queue(outgoing, sender))
        self.applied.update(applied)

    async def complete(self, attempts: Sending, records: Save, chunks: list[Chunk]) -> None:
        """The end of a decided batch: its attempts acknowledged, then its state saved, then its
        input acked to Faust. Started only once the previous batch completed (:meth:`settle`)."""
        try:
            await self.wait(attempts)  # attempts acknowledged before the state that produced them
            await self.save(records)
            _ack(self.app, chunks)  # only now may Faust commit their offsets
            self.counters.batches += 1
            self.last_progress = time.monotonic()
        except (Exception, asyncio.CancelledError) as exc:  # anything unexpected: state ahead of Kafka
            fatal(EXIT_SEND_FAILED, f"saving a batch failed: {exc!r}")

    async def hand_over(self, outgoing: list[Outgoing], records: Save, chunks: list[Chunk]) -> None:
        """Complete a decided batch: inline, or (PIPELINED) in the background once the previous batch
        has completed — one completion in flight, in batch order, so acks go in offset order (the
        agent's concurrency stays 1: faust-streaming #606)."""
        attempts = await self.queue(outgoing)  # on their way while the previous batch completes
        await self.settle()
        if not _current(self.app, chunks):
            # A rebalance began while this batch was decided: Faust suspends the flow before it calls
            # the revoke handler (faust/app/base.py:1811-1812, 1836), which waits for the previous
            # batch (drop_cached). This batch's input is not acked, so it is fetched again after the
            # seek; its state, advanced in memory, is dropped. Its attempts may reach Kafka: deciding
            # the same log again from the saved state repeats them (same attemptIds and contents).
            self.forget({chunk.tp.partition for chunk in chunks})
            await self.wait(attempts)
            return
        completion = self.complete(attempts, records, chunks)
        if PIPELINED:
            self.in_flight = asyncio.ensure_future(completion)
        else:
            await completion

    async def settle(self) -> None:
        """Wait until no batch is completing in the background. Shielded: a caller that is cancelled
        (an agent stopping) does not cancel the completion, which would leave a batch half-saved."""
        while (flight := self.in_flight) is not None:
            await asyncio.shield(flight)
            if self.in_flight is flight:
                self.in_flight = None

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the cached state of `partitions`: the next batch restores them from Kafka."""
        for partition in partitions:
            self.live.pop(partition, None)
            self.applied.pop(partition, None)


def _current(app: faust.App, chunks: list[Chunk]) -> list[Chunk]:
    """The chunks fetched in the current consumer generation, while the flow is active.

    Others were fetched before a rebalance: they are neither decided nor acked (Faust seeks every
    assigned partition back to its committed offset, so they come again), only forgotten.
    """
    generation = app.consumer_generation_id
    active = app.flow_control.is_active()
    fresh = [c for c in chunks if active and c.generation_id == generation]
    if len(fresh) < len(chunks):
        unacked = app.consumer.unacked
        for chunk in chunks:
            if not active or chunk.generation_id != generation:
                unacked.discard(chunk)
    return fresh


def _ack(app: faust.App, chunks: list[Chunk]) -> None:
    """Let Faust commit past `chunks` (their effect is in Kafka)."""
    consumer: BatchDrainConsumer = app.consumer  # type: ignore[assignment]
    for chunk in chunks:
        consumer.ack_chunk(chunk)


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app: topics, tables, the three agents and the timers."""
    settings.worker_dir.mkdir(parents=True, exist_ok=True)
    if settings.compression == "lz4":
        use_fast_lz4()  # aiokafka's default is LZ4-HC, 5x slower (streams/kafka/codec.py)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        datadir=str(settings.worker_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        processing_guarantee=settings.guarantee,
        web_enabled=False,
        producer_linger_ms=0,
        producer_compression_type=settings.compression,
        producer_max_batch_size=1_000_000,  # under the broker's message.max.bytes (1,048,588)
        stream_buffer_maxsize=2 * BATCH_MAX,
        broker_max_poll_records=BATCH_MAX,
        consumer_max_fetch_size=FETCH_BYTES_PER_PARTITION,
        broker_commit_every=None,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(1.0, settings.session_timeout_s / 3),
        consumer_group_instance_id=settings.instance_id,
        consumer_auto_offset_reset="earliest",
        producer_request_timeout=settings.send_timeout_s,
        table_cleanup_interval=3600.0,
    )
    inputs = (TRADES, SNAPSHOTS, EXECUTIONS, MARKET_EVENTS, CONFIG_CHANGES)
    install_consumer(app, [settings.topic(name) for name in inputs])
    rt = Runtime(app, settings)
    _decide_agent(app, rt)
    _forward_agents(app, rt)
    _timers(app, rt)
    return app


def _topic(app: faust.App, settings: Settings, name: str, partitions: int) -> faust.TopicT:
    return app.topic(
        settings.topic(name),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


def _raw_table(app: faust.App, name: str, partitions: int) -> Any:
    raw: faust.Schema[bytes, bytes] = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    # Writes go straight to the changelog partition of the log partition they belong to (Runtime.save),
    # and a decision partition is restored by reading its changelog partition from Kafka (Runtime.load);
    # Faust still recovers the table (and keeps standbys) from those changelogs, which only costs time.
    # Small segments let compaction keep those reads short (Kafka never compacts the active segment),
    # and tombstones go after a minute, not Kafka's 24 h: every batch writes and later deletes its own
    # delta key, so a day of tombstones was what a fresh worker's recovery read, one event at a time
    # (docs/failover.md). A reader that misses a tombstone keeps a stale key, which restore ignores
    # (the commit record names the live ones).
    return app.Table(
        name,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        schema=raw,
        extra_topic_configs={
            "segment.ms": "60000",
            "min.cleanable.dirty.ratio": "0.1",
            "delete.retention.ms": "60000",
        },
    )


def _decide_agent(app: faust.App, rt: Runtime) -> None:
    settings = rt.settings
    trades_topic = _topic(app, settings, TRADES, settings.partitions)
    table = _raw_table(app, "partition-state", settings.partitions)
    topics = OutputTopics(
        settings.topic(COPY_ATTEMPTS),
        settings.topic(DEAD_LETTERS),
        settings.topic(BOOK_EVENTS),
        settings.topic(CONFIG_REPORTS),
    )

    async def decide_batches() -> None:
        """Decide a batch, then hand it over (Runtime.hand_over) to complete: attempts, state, acks."""
        sink = sink_for(app, trades_topic.get_topic_name())
        changelog = table.changelog_topic.get_topic_name()
        while True:
            fresh = _current(app, await sink.take(BATCH_MAX))
            if not fresh:
                continue
            by_partition: dict[int, list[Any]] = defaultdict(list)
            for chunk in fresh:
                by_partition[chunk.tp.partition] += chunk.records
            loaded = await rt.load(by_partition, changelog)
            if not _current(app, fresh):  # a rebalance began while restoring: this batch comes again
                continue
            outgoing: list[Outgoing] = []
            touched = []
            for partition, batch in by_partition.items():
                saved = loaded[partition]
                dirty: set[str] = set()
                for start in range(0, len(batch), DECIDE_SLICE):
                    if start:
                        await asyncio.sleep(0)  # let the previous batch's sends and acks move meanwhile
                    try:
                        dirty |= decide_batch(
                            saved, batch[start : start + DECIDE_SLICE], outgoing, rt.counters, topics
                        )
                    except LogGap as gap:  # nothing of this batch is acked: a restart reads from the commit
                        fatal(EXIT_LOG_GAP, str(gap))
                        raise  # not reached
                touched.append((partition, saved, dirty))
                await asyncio.sleep(0)
            await rt.hand_over(outgoing, rt.records(changelog, touched), fresh)

    @app.agent(trades_topic, concurrency=1)
    async def decide(stream: Any) -> None:  # a faust Stream
        """Decide the log's messages, which the consumer hands over in whole batches (LogSink)."""
        await _with_subscription(stream, decide_batches())

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def say_assigned(app_: Any, assigned: Any, **_: Any) -> None:
        """Which decision partitions this worker now owns (the throughput bench times W from here)."""
        name = trades_topic.get_topic_name()
        mine = sorted(tp.partition for tp in assigned if tp.topic == name)
        log.info("%s %s", ASSIGNED_LINE, mine)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def drop_cached(app_: Any, revoked: Any, **_: Any) -> None:
        """A revoked partition may be decided elsewhere next: restore it from Kafka when it is back.

        Faust calls this after its ``wait_empty`` (faust/app/base.py:1829, transport/consumer.py:866-889),
        which waits for the chunks of the batch in flight (unacked until saved); the completion is also
        awaited here, so a partition is never handed over half-saved, before its state is dropped."""
        await rt.settle()
        name = trades_topic.get_topic_name()
        unacked = app.consumer.unacked
        for sink_topic in _SINK_TOPICS(rt.settings):
            for chunk in sink_for(app, sink_topic).drop_all():  # fetched again after the seek
                unacked.discard(chunk)
        rt.forget(tp.partition for tp in revoked if tp.topic == name)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def finish_saving(app_: Any, **_: Any) -> None:
        """On stop, the batch in flight completes while the producer runs (faust/app/base.py:1712-1715)."""
        await rt.settle()
        await rt.close()
        c = rt.counters
        log.info("stopping: %d events, %d batches; %s", c.events, c.batches, GC_PAUSES.summary())

    del decide, say_assigned, drop_cached, finish_saving


def _SINK_TOPICS(settings: Settings) -> list[str]:
    return [settings.topic(name) for name in (TRADES, SNAPSHOTS, EXECUTIONS, MARKET_EVENTS, CONFIG_CHANGES)]


async def _with_subscription(stream: Any, body: Any) -> None:
    """Run `body` (which takes the topic's messages from its sink) while iterating `stream`, so that
    Faust subscribes the topic. The consumer hands every message of the topic to the sink, so the
    stream receives none; it must not ack anything (acks follow the saved effect)."""
    stream.enable_acks = False

    async def subscribed() -> None:
        async for _ in stream.events():
            raise RuntimeError("a message of a sink topic reached its Faust stream")

    await asyncio.gather(body, subscribed())


async def _sink_batches(app: faust.App, topic: str, limit: int) -> AsyncIterator[list[Chunk]]:
    """Batches of `topic`'s chunks fetched in the current generation; the caller acks each batch
    (:func:`_ack`) once its effect is in Kafka."""
    sink = sink_for(app, topic)
    while True:
        fresh = _current(app, await sink.take(limit))
        if fresh:
            yield fresh


def _source_header(message: Any) -> list[tuple[str, bytes]]:
    """The header naming the original of a message the worker copies into the decision log."""
    return [(SOURCE_HEADER, f"{message.topic}:{message.partition}:{message.offset}".encode())]


def _forward_agents(app: faust.App, rt: Runtime) -> None:
    settings = rt.settings
    n = settings.partitions
    config_topic = _topic(app, settings, CONFIG_CHANGES, 1)
    config_table = _raw_table(app, "config-store", 1)
    trades_name = settings.topic(TRADES)
    reports_name = settings.topic(CONFIG_REPORTS)

    for name, partitions, model in (
        (SNAPSHOTS, n, PortfolioSnapshot),
        (EXECUTIONS, n, ExecutionReport),
        (MARKET_EVENTS, 1, MarketResolved),
    ):
        _copy_agent(app, rt, _topic(app, settings, name, partitions), model)

    async def forward_changes() -> None:
        async for chunks in _sink_batches(app, config_topic.get_topic_name(), 100):
            raw_store = config_table.data.get(b"store")
            store, applied_offset = ConfigStore(), -1
            if raw_store is not None:
                saved = orjson.loads(raw_store)
                store, applied_offset = ConfigStore.from_json(saved["store"]), saved["offset"]
            outgoing: list[Outgoing] = []
            for message in (m for chunk in chunks for m in chunk.records):
                if message.offset <= applied_offset:
                    rt.counters.skipped_redeliveries += 1
                    continue
                applied_offset = message.offset
                store = _forward_change(message, store, outgoing, rt, n, trades_name, reports_name)
            await rt.send_all(outgoing)
            saved_store = orjson.dumps({"store": store.to_json(), "offset": applied_offset})
            config_table.data[b"store"] = saved_store
            changelog = config_table.changelog_topic.get_topic_name()
            await rt.send_all([(changelog, b"store", saved_store, 0, None)])
            _ack(app, chunks)

    @app.agent(config_topic, concurrency=1)
    async def forward_config(stream: Any) -> None:  # a faust Stream
        await _with_subscription(stream, forward_changes())

    del forward_config


def _copy_agent(app: faust.App, rt: Runtime, topic: faust.TopicT, model: type[CopiedEvent]) -> None:
    """An agent that copies each valid event of `topic` into the decision partitions it concerns
    (:func:`streams.topology.copy_targets`): a leader's snapshot or execution report into its leader's
    partition, a whole-portfolio snapshot or a market resolution into every one. Invalid ones are
    dead-lettered with the original key (a resolution's is its assetId)."""
    settings = rt.settings
    n = settings.partitions
    trades_name = settings.topic(TRADES)
    dead_letters_name = settings.topic(DEAD_LETTERS)

    async def copy_batches() -> None:
        async for chunks in _sink_batches(app, topic.get_topic_name(), 1_000):
            outgoing: list[Outgoing] = []
            for message in (m for chunk in chunks for m in chunk.records):
                try:
                    decoded = decode_expecting(message.value, model)
                except DecodeError as exc:
                    outgoing.append(dead_letter_message(message, str(exc), dead_letters_name, rt.counters))
                    continue
                source = _source_header(message)
                targets = copy_targets(decoded, message.partition, n)
                outgoing += [(trades_name, message.key, message.value, p, source) for p in targets]
            await rt.send_all(outgoing)
            _ack(app, chunks)  # only now may Faust commit their offsets

    async def copy(stream: Any) -> None:  # a faust Stream
        await _with_subscription(stream, copy_batches())

    copy.__name__ = copy.__qualname__ = f"copy_{model.__name__}"
    app.agent(topic, name=f"copy-{topic.get_topic_name()}", concurrency=1)(copy)


def _forward_change(
    message: Any,
    store: ConfigStore,
    outgoing: list[Outgoing],
    rt: Runtime,
    n: int,
    trades_name: str,
    reports_name: str,
) -> ConfigStore:
    """Validate one config change (report it once) and copy it into every decision partition."""
    try:
        change = decode_expecting(message.value, ConfigChange)
    except DecodeError as exc:
        outgoing.append(dead_letter_message(message, str(exc), rt.settings.topic(DEAD_LETTERS), rt.counters))
        return store
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
    outgoing += [(trades_name, message.key, message.value, p, _source_header(message)) for p in range(n)]
    return store


def _timers(app: faust.App, rt: Runtime) -> None:
    settings = rt.settings
    n = settings.partitions
    trades_name = settings.topic(TRADES)

    if settings.ticks:

        @app.timer(interval=settings.tick_interval_ms / 1000)  # type: ignore[untyped-decorator]
        async def tick() -> None:
            """Time passes in every partition, in the same log as the trades (SPEC 8)."""
            value = orjson.dumps({"kind": "tick", "nowMs": int(time.time() * 1000)})
            await rt.send_all((trades_name, None, value, p, None) for p in range(n))

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def report_progress() -> None:
        c = rt.counters
        log.info(
            "processed %d events, %d attempts, %d dead letters, %d redeliveries skipped; %s",
            c.events,
            c.attempts,
            c.dead_letters,
            c.skipped_redeliveries,
            GC_PAUSES.summary(),
        )

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def watchdog() -> None:
        """Stop the worker when it has lag (or a send pending) but made no progress for too long."""
        reason = _stalled(app, rt, trades_name)
        if reason is not None:
            fatal(EXIT_STALLED, reason)


def _stalled(app: faust.App, rt: Runtime, trades_name: str) -> str | None:
    """Why the worker is stuck, or None: a send pending too long, or no batch decided for too long
    while input is waiting (messages delivered but not acknowledged, or fetched high-water marks past
    what was decided)."""
    now = time.monotonic()
    limit = rt.settings.watchdog_s
    if rt.sending_since is not None and now - rt.sending_since > limit:
        return f"a send has been pending for {now - rt.sending_since:.0f} s"
    if app.rebalancing or now - rt.last_progress <= limit:
        return None
    unacked = len(app.consumer.unacked)
    waiting = [f"{unacked} fetched chunks delivered but not decided"] if unacked else []
    for tp in app.consumer.assignment():
        highwater = app.consumer.highwater(tp) if tp.topic == trades_name else None
        applied = rt.applied.get(tp.partition)
        if highwater is not None and applied is not None and highwater - 1 > applied:
            waiting.append(f"partition {tp.partition} {highwater - 1 - applied} behind")
    if not waiting:
        rt.last_progress = now  # idle, not stuck
        return None
    return f"no batch decided for {now - rt.last_progress:.0f} s: {'; '.join(waiting)}"


def _session_timeout_allowed(settings: Settings) -> Settings:
    """`settings` with the session timeout raised to the broker's minimum when it is below it (a broker
    refuses a member whose session timeout is under ``group.min.session.timeout.ms``)."""
    from streams.kafka.admin import group_min_session_timeout_ms

    floor_ms = asyncio.run(group_min_session_timeout_ms(settings))
    if floor_ms is None or floor_ms <= settings.session_timeout_s * 1000:
        return settings
    print(
        f"copybot worker: session timeout {settings.session_timeout_s * 1000:.0f} ms is below the broker's "
        f"group.min.session.timeout.ms; using {floor_ms} ms (a dead worker's partitions move after it)",
        file=sys.stderr,
    )
    return dataclasses.replace(settings, session_timeout_s=floor_ms / 1000)


MMAP_THRESHOLD_BYTES = 128 * 1024
"""Allocations at least this big get their own mapping, returned to the system when freed."""


def fix_mmap_threshold() -> bool:
    """Keep glibc's mmap threshold at 128 KiB (``mallopt(M_MMAP_THRESHOLD)``, as
    MALLOC_MMAP_THRESHOLD_ does). glibc raises it each time a large block is freed, after which the
    worker's big changelog chunks and fetch buffers come from the heap and stay there: RSS rose 25 %
    over a 1M-trade run with a flat decision state, ±8.6 % with the threshold fixed (README, Memory).
    False where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(-3, MMAP_THRESHOLD_BYTES))  # -3: M_MMAP_THRESHOLD (malloc.h)
    except (OSError, AttributeError):
        return False


def run_worker(loglevel: str = "info") -> int:
    """Create the topics if needed and run a Faust worker until it is stopped."""
    from streams.kafka.admin import create_topics

    settings = Settings.from_env()
    if settings.guarantee == "exactly_once":
        print(EXACTLY_ONCE_REFUSED, file=sys.stderr)
        return 2
    asyncio.run(create_topics(settings))
    fix_mmap_threshold()
    tune_gc()
    GC_PAUSES.install()
    app = create_app(_session_timeout_allowed(settings))
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


__all__ = ["create_app", "partition_key", "run_worker"]
