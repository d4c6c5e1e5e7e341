"""Faust's Kafka consumer with a leaner fetch loop (the worker's hot path).

Faust 0.15.3 hands every fetched message to the conductor through ``Service.wait_first`` (four tasks
created and three cancelled per message, ``faust/transport/consumer.py:1220``), so that a rebalance
can interrupt a delivery blocked on a full stream buffer. That costs more than deciding the message.
This loop calls the conductor directly while the flow is not suspended (nothing can then block it
but a full buffer, which the decide agent empties in bulk) and keeps Faust's waiting path for the
rare case that it is. It never commits: Faust's commit timer does (``broker_commit_interval``), so a
slow commit cannot stop fetching.

Private Faust hooks used here (pinned faust-streaming==0.15.3, tested in
tests/unit/test_worker_hooks.py): ``Consumer._drain_messages`` (overridden), ``getmany``,
``_read_offset``, ``_add_gap``, ``suspend_flow``, ``Transport.Consumer``, ``App._transport``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

YIELD_EVERY = 500
"""Messages delivered between two returns to the event loop (heartbeats, timers, the agents)."""


class BatchDrainConsumer(faust_aiokafka.Consumer):
    """The aiokafka-backed Faust consumer with a direct delivery path."""

    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
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
                    if suspended():
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        await callback(message)
                    read_offset[tp] = offset
                    delivered += 1
                    if delivered % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise


class Transport(faust_aiokafka.Transport):
    Consumer = BatchDrainConsumer


def install(app: faust.App) -> None:
    """Make `app` use :class:`BatchDrainConsumer` (call before anything touches ``app.transport``)."""
    if app._transport is not None:
        raise RuntimeError("install the consumer before the app's transport is created")
    app._transport = Transport(app.conf.broker_consumer, app)
