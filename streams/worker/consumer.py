"""Faust's Kafka consumer with a leaner fetch loop (the worker's hot path).

Faust 0.15.3 turns every fetched record into a ``ConsumerMessage`` and hands it to the conductor
through ``Service.wait_first`` (four tasks created and three cancelled per message,
``faust/transport/consumer.py:1220``), then a stream's iterator acks it one by one. That costs more
than deciding the message. This loop takes each fetch (``_wait_next_records``, the first half of
Faust's ``getmany``) and hands every partition's records of an input topic, as aiokafka returned them,
to that topic's :class:`LogSink` as one :class:`Chunk`; the agent empties the sink in whole batches
and acks a chunk at once (:meth:`BatchDrainConsumer.ack_chunk`: the offsets Faust's commit needs).
Other topics (table changelogs) keep Faust's per-message path. It never commits: Faust's commit
timer does (``broker_commit_interval``), so a slow commit cannot stop fetching.

Private Faust hooks used here (pinned faust-streaming==0.15.3, tested in
tests/unit/test_worker_hooks.py): ``Consumer._drain_messages`` (overridden), ``_wait_next_records``,
``perform_seek``, ``flow_active``, ``_buffered_partitions``, ``_read_offset``, ``_add_gap``,
``_to_message``, ``_unacked_messages``, ``_committed_offset``, ``_acked``, ``_acked_index``,
``_n_acked``, ``_waiting_for_ack``, ``faust.types.tuples.ack_lock``, ``suspend_flow``,
``Transport.Consumer``, ``App._transport``, ``Consumer._new_consumer_thread``,
``AIOKafkaConsumerThread._create_worker_consumer`` and aiokafka's ``AIOKafkaConsumer._fetch_max_wait_ms``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

log = logging.getLogger(__name__)

SINK_LIMIT = 40_000
"""Records a sink holds before the fetch loop waits for its agent (backpressure)."""


class Chunk:
    """One partition's records from one fetch, as aiokafka returned them (``ConsumerRecord``: topic,
    partition, offset, key, value, headers), with the consumer generation they were fetched in.

    Tracked by the consumer as one unacknowledged "message" (Faust's ``wait_empty`` waits for its
    ``acked``, faust/transport/consumer.py:867-896) until :meth:`BatchDrainConsumer.ack_chunk`."""

    __slots__ = ("__weakref__", "acked", "generation_id", "records", "tp")
    refcount = 0
    """Read by Faust's ``wait_empty`` when it logs what it waits for (consumer.py:874)."""

    def __init__(self, tp: Any, records: list[Any], generation_id: int) -> None:
        self.tp = tp
        self.records = records
        self.generation_id = generation_id
        self.acked = False

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"<Chunk {self.tp.topic}:{self.tp.partition} {len(self.records)} records>"


class LogSink:
    """Whole fetched chunks of one topic, handed to its agent without Faust's per-message path."""

    def __init__(self) -> None:
        self.chunks: deque[Chunk] = deque()
        self.size = 0
        self.ready = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    def put(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        if self.size >= SINK_LIMIT:
            self.room.clear()

    async def take(self, limit: int) -> list[Chunk]:
        """Wait for chunks; take the oldest ones, as many as fit in `limit` records (at least one)."""
        while not self.chunks:
            self.ready.clear()
            await self.ready.wait()
        return self.take_ready(limit)

    def take_ready(self, limit: int) -> list[Chunk]:
        """The oldest chunks that fit in `limit` records (at least one, if any), without waiting."""
        chunks = self.chunks
        taken: list[Chunk] = []
        size = 0
        while chunks and (not taken or size + len(chunks[0]) <= limit):
            chunk = chunks.popleft()
            taken.append(chunk)
            size += len(chunk)
        self.size -= size
        if self.size < SINK_LIMIT:
            self.room.set()
        return taken

    def drop_all(self) -> list[Chunk]:
        """Everything queued (fetched before a rebalance: it is fetched again after the seek)."""
        dropped = list(self.chunks)
        self.chunks.clear()
        self.size = 0
        self.room.set()
        return dropped


FETCH_MAX_WAIT_MS = 100
"""How long the broker may hold a fetch when there is no data. Faust hardcodes 1500 ms
(``faust/transport/drivers/aiokafka.py:615``); a partition resumed after a rebalance is fetched only
once the fetch in flight returns, so that wait was added to every failover (docs/failover.md)."""


class QuickFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka consumer with a short fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when it starts (aiokafka consumer.py:391)
        return consumer


class BatchDrainConsumer(faust_aiokafka.Consumer):
    """The aiokafka-backed Faust consumer with a direct delivery path."""

    sinks: dict[str, LogSink]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sinks = _SINKS.get(id(self.app), {})

    def _new_consumer_thread(self) -> QuickFetchConsumerThread:
        return QuickFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def seek_to_committed(self) -> Any:
        """Seek every assigned partition back to its committed offset — a never-committed sink
        partition too (see :func:`seek_back`). Faust's ``perform_seek`` calls this whenever it drops
        fetched records (flow stopped for a rebalance, faust/transport/consumer.py:565-581, 766-772)
        and around table recovery (faust/tables/recovery.py:321, 655)."""
        return await seek_back(super().seek_to_committed, self._thread.seek_to_beginning, set(self.sinks))

    async def _drain_messages(self, fetcher: Any) -> None:
        stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        try:
            while not (stopped() or fetcher_stopped()):
                await asyncio.sleep(0)
                if self.should_stop:
                    break
                await self._fetch_and_deliver()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise

    async def _fetch_and_deliver(self) -> None:
        """One fetch, delivered partition by partition; the guards of Faust's ``getmany``
        (faust/transport/consumer.py:739-772): nothing while the flow is stopped (then seek back to
        the committed offsets), stop when the generation changes, only active partitions."""
        records, active = await self._wait_next_records(1.0)
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:  # as Faust's getmany: logged, the next fetch retries
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return
        app = self.app
        generation = app.consumer_generation_id
        buffered = self._buffered_partitions
        for tp, batch in records.items():
            if not self.flow_active or app.consumer_generation_id != generation:
                break
            if active is None or tp in active or tp in buffered:
                await self._deliver(tp, batch, generation)
        _wake(self.sinks)

    async def _deliver(self, tp: Any, batch: list[Any], generation: int) -> None:
        last = self._read_offset[tp]
        if last is not None and batch and batch[0].offset < last:
            batch = [r for r in batch if r.offset >= last]  # delivered before (a seek back)
        if not batch:
            return
        if self.app.topics.acks_enabled_for(tp.topic):
            await self._add_gaps(tp, last, batch)
        sink = self.sinks.get(tp.topic)
        if sink is None:
            await self._deliver_messages(tp, batch)
            return
        if not sink.room.is_set():
            _wake(self.sinks)
            await self.wait_first(sink.room.wait(), self.suspend_flow.wait())
        chunk = Chunk(tp, batch, generation)
        self._unacked_messages.add(chunk)  # type: ignore[arg-type]
        sink.put(chunk)
        self._read_offset[tp] = batch[-1].offset

    async def _add_gaps(self, tp: Any, last: int | None, batch: list[Any]) -> None:
        """Register skipped offsets as Faust's drain loop does per message (consumer.py:1210-1215)."""
        previous = last
        if batch[-1].offset - batch[0].offset + 1 == len(batch):
            batch = batch[:1]  # contiguous: only the step from `last` can skip
        for record in batch:
            if previous and record.offset - previous > 1:
                await self._add_gap(tp, previous + 1, record.offset)
            previous = record.offset

    async def _deliver_messages(self, tp: Any, batch: list[Any]) -> None:
        """A topic without a sink (table changelogs): Faust's path, one message at a time."""
        callback, to_message = self.callback, self._to_message
        for record in batch:
            message = to_message(tp, record)
            if self.suspend_flow.is_set():
                await self.wait_first(callback(message), self.suspend_flow.wait())
            else:
                await callback(message)
            self._read_offset[tp] = record.offset

    def ack_chunk(self, chunk: Chunk) -> None:
        """Acknowledge every record of `chunk`: Faust commits past them (the bookkeeping of
        ``Consumer.ack``, faust/transport/consumer.py:825-853, for a chunk at once)."""
        with ack_lock:
            if chunk.acked:
                return
            chunk.acked = True
            self._unacked_messages.discard(chunk)  # type: ignore[arg-type]
            tp = chunk.tp
            if not self.app.topics.acks_enabled_for(tp.topic):
                return
            committed = self._committed_offset[tp]
            offsets = [r.offset for r in chunk.records if committed is None or r.offset >= committed]
            index = self._acked_index[tp]
            if not index.isdisjoint(offsets):
                offsets = [o for o in offsets if o not in index]
            index.update(offsets)
            self._acked[tp].extend(offsets)
            self._n_acked += len(offsets)
            notify(self._waiting_for_ack)


async def seek_back(
    seek_to_committed: Callable[[], Awaitable[Mapping[Any, int | None]]],
    seek_to_beginning: Callable[..., Awaitable[None]],
    topics: set[str],
) -> Mapping[Any, int | None]:
    """Seek back to the committed offsets, and every partition of `topics` with none (or 0) to its
    beginning; returns the committed offsets.

    aiokafka's ``seek_to_committed`` moves only partitions whose committed offset is above 0
    (``if offset and offset > 0``, aiokafka/consumer/consumer.py:901): a partition nothing was ever
    committed for stays where the fetcher is. Faust seeks back exactly when it drops records it
    fetched but never delivered (while the flow is stopped for a rebalance), so those records — the
    first ones ever written to the partition — were skipped, and once a later offset was acked Faust
    committed past them (with no committed offset, ``_new_offset`` does not check the head gap,
    faust/transport/consumer.py:1138-1150). With no committed offset, the group's position is
    auto-offset-reset, which is "earliest" for the worker: the beginning."""
    committed = await seek_to_committed()
    never = [tp for tp, offset in committed.items() if not offset and tp.topic in topics]
    if never:
        names = ", ".join(f"{tp.topic}:{tp.partition}" for tp in never)
        log.info("seeking never-committed partitions to their beginning: %s", names)
        await seek_to_beginning(*never)
    return committed


def _wake(sinks: dict[str, LogSink]) -> None:
    for sink in sinks.values():
        if sink.chunks:
            sink.ready.set()


class Transport(faust_aiokafka.Transport):
    Consumer = BatchDrainConsumer


_SINKS: dict[int, dict[str, LogSink]] = {}
"""Each installed app's sinks (by id(app)), made before its consumer exists so no message of a sink
topic can ever take Faust's stream path."""


def install(app: faust.App, sink_topics: list[str]) -> None:
    """Make `app` use :class:`BatchDrainConsumer`, handing every message of `sink_topics` to a sink
    (call before anything touches ``app.transport``)."""
    if app._transport is not None:
        raise RuntimeError("install the consumer before the app's transport is created")
    _SINKS[id(app)] = {topic: LogSink() for topic in sink_topics}
    app._transport = Transport(app.conf.broker_consumer, app)


def sink_for(app: faust.App, topic: str) -> LogSink:
    """The sink that receives every message of `topic` (instead of the topic's Faust stream)."""
    return _SINKS[id(app)][topic]
