"""Faust's Kafka consumer with a leaner fetch loop (the worker's hot path).

Faust 0.15.3 hands every fetched message to the conductor through ``Service.wait_first`` (four tasks
created and three cancelled per message, ``faust/transport/consumer.py:1220``), so that a rebalance
can interrupt a delivery blocked on a full stream buffer. That costs more than deciding the message.
This loop hands the messages of the decision log straight to a :class:`LogSink` that the decide
agent empties in whole batches, calls the conductor directly for other topics while the flow is not
suspended (nothing can then block it but a full buffer), and keeps Faust's waiting path for the rare
case that it is. It never commits: Faust's commit timer does (``broker_commit_interval``), so a
slow commit cannot stop fetching.

Private Faust hooks used here (pinned faust-streaming==0.15.3, tested in
tests/unit/test_worker_hooks.py): ``Consumer._drain_messages`` (overridden), ``getmany``,
``_read_offset``, ``_add_gap``, ``suspend_flow``, ``Transport.Consumer``, ``App._transport``,
``Consumer._new_consumer_thread``, ``AIOKafkaConsumerThread._create_worker_consumer`` and aiokafka's
``AIOKafkaConsumer._fetch_max_wait_ms``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

YIELD_EVERY = 500
"""Messages delivered between two returns to the event loop (heartbeats, timers, the agents)."""
SINK_LIMIT = 40_000
"""Messages a sink holds before the fetch loop waits for its agent (backpressure)."""


class LogSink:
    """Whole fetched batches of one topic, handed to its agent without Faust's per-message path.

    The consumer tracks each message as unacknowledged (as Faust's stream would); the agent acks it
    once its effect is saved (:meth:`faust.types.tuples.Message.ack`).
    """

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.ready = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    def put(self, message: Any) -> None:
        self.messages.append(message)
        if len(self.messages) >= SINK_LIMIT:
            self.room.clear()

    async def take(self, limit: int) -> list[Any]:
        """Wait for messages; take up to `limit` of them, oldest first."""
        while not self.messages:
            self.ready.clear()
            await self.ready.wait()
        batch = self.messages[:limit]
        del self.messages[:limit]
        if len(self.messages) < SINK_LIMIT:
            self.room.set()
        return batch

    def drop_all(self) -> list[Any]:
        """Everything queued (fetched before a rebalance: it is fetched again after the seek)."""
        dropped, self.messages = self.messages, []
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

    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
        sinks = self.sinks
        add_unacked = self._unacked_messages.add
        read_offset = self._read_offset
        suspended = self.suspend_flow.is_set
        acks_enabled_for = self.app.topics.acks_enabled_for
        stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        try:
            while not (stopped() or fetcher_stopped()):
                await asyncio.sleep(0)
                if self.should_stop:
                    break
                delivered = 0
                async for tp, message in self.getmany(timeout=1.0):
                    last = read_offset[tp]
                    offset = message.offset
                    if last is not None and offset < last:
                        continue  # delivered before (a seek back); the stream saw it
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)
                    sink = sinks.get(tp.topic)
                    if sink is not None:
                        if not sink.room.is_set():
                            await self.wait_first(sink.room.wait(), self.suspend_flow.wait())
                        message.tracked = True
                        add_unacked(message)
                        sink.put(message)
                    elif suspended():
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        await callback(message)
                    read_offset[tp] = offset
                    delivered += 1
                    if delivered % YIELD_EVERY == 0:
                        _wake(sinks)
                        await asyncio.sleep(0)
                _wake(sinks)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise


def _wake(sinks: dict[str, LogSink]) -> None:
    for sink in sinks.values():
        if sink.messages:
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
