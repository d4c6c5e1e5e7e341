"""The private Faust hooks the worker's hot path relies on (streams/worker/consumer.py, app.py).

Faust is pinned (pyproject.toml); these tests fail loudly when an upgrade moves one of them, instead
of the worker silently losing its fast path or its delivery guarantees.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import faust
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ConsumerMessage, Message

from streams.settings import Settings
from streams.worker.consumer import (
    FETCH_MAX_WAIT_MS,
    BatchDrainConsumer,
    LogSink,
    QuickFetchConsumerThread,
    install,
)


def test_faust_is_the_pinned_version() -> None:
    assert version("faust-streaming") == "0.15.3"


def test_the_consumer_hooks_exist_with_the_shapes_used() -> None:
    base = faust_consumer.Consumer
    assert inspect.iscoroutinefunction(base._drain_messages)
    assert list(inspect.signature(base._drain_messages).parameters) == ["self", "fetcher"]
    assert inspect.isasyncgenfunction(base.getmany)
    assert inspect.iscoroutinefunction(base._add_gap)
    assert callable(base.ack)
    source = inspect.getsource(base.__init__)
    for attribute in ("_read_offset", "_unacked_messages", "suspend_flow"):
        assert attribute in source, attribute
    assert faust_aiokafka.Transport.Consumer is faust_aiokafka.Consumer
    assert issubclass(BatchDrainConsumer, faust_aiokafka.Consumer)


def test_a_message_carries_its_fetch_generation_and_can_be_acked_without_a_stream() -> None:
    parameters = inspect.signature(ConsumerMessage.__init__).parameters
    assert "generation_id" in parameters
    assert "tracked" in inspect.getsource(Message.__init__)


def test_install_replaces_the_transport_before_it_is_created(tmp_path: object) -> None:
    app = faust.App("hooks-test", broker="kafka://127.0.0.1:1", store="memory://")
    assert app._transport is None
    install(app, ["hooks.topic"])
    assert app.transport.Consumer is BatchDrainConsumer
    assert Settings().session_timeout_s <= 6


async def test_a_log_sink_hands_over_batches_in_order_and_applies_backpressure() -> None:
    sink = LogSink()
    for i in range(5):
        sink.put(i)
    sink.ready.set()
    assert await sink.take(3) == [0, 1, 2]
    assert await sink.take(10) == [3, 4]
    import streams.worker.consumer as consumer_module

    limit = consumer_module.SINK_LIMIT
    for i in range(limit):
        sink.put(i)
    assert not sink.room.is_set()
    await sink.take(1)
    assert sink.room.is_set()
    assert len(sink.drop_all()) == limit - 1


async def test_the_worker_consumer_fetches_with_a_short_wait_not_fausts_hardcoded_one() -> None:
    # Faust builds its aiokafka consumer with fetch_max_wait_ms=1500, which delays the first fetch of
    # a partition resumed after a rebalance; the worker's consumer thread shortens it
    assert "fetch_max_wait_ms=1500" in inspect.getsource(
        faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
    )
    app = faust.App("hooks-fetch", broker="kafka://127.0.0.1:1", store="memory://")
    install(app, ["hooks.topic"])
    consumer = app.consumer
    assert isinstance(consumer, BatchDrainConsumer)
    thread = consumer._new_consumer_thread()
    assert isinstance(thread, QuickFetchConsumerThread)
    client = thread._create_worker_consumer(app.transport)
    assert client._fetch_max_wait_ms == FETCH_MAX_WAIT_MS <= 200
