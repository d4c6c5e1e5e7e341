"""The private Faust hooks the worker's hot path relies on (streams/worker/consumer.py, app.py).

Faust is pinned (pyproject.toml); these tests fail loudly when an upgrade moves one of them, instead
of the worker silently losing its fast path or its delivery guarantees.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any

import faust
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.codec import lz4_decode
from aiokafka.producer.sender import Sender
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import tuples as faust_tuples
from faust.types.tuples import ConsumerMessage, Message

from streams.errors import SettingsError
from streams.kafka.codec import builders, lz4_fast, use_fast_lz4
from streams.settings import Settings
from streams.worker.app import FETCH_BYTES_PER_PARTITION, create_app
from streams.worker.consumer import (
    FETCH_MAX_WAIT_MS,
    BatchDrainConsumer,
    Chunk,
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


def _chunk(partition: int, offsets: range, generation: int = 1) -> Chunk:
    records = [ConsumerRecord("hooks.topic", partition, o, 0, 0, None, b"v", None, 0, 1, ()) for o in offsets]
    return Chunk(TopicPartition("hooks.topic", partition), records, generation)


async def test_a_log_sink_hands_over_batches_in_order_and_applies_backpressure() -> None:
    sink = LogSink()
    chunks = [_chunk(0, range(i * 10, i * 10 + 10)) for i in range(5)]
    for chunk in chunks:
        sink.put(chunk)
    sink.ready.set()
    assert await sink.take(30) == chunks[:3]
    assert await sink.take(5) == chunks[3:4]  # at least one chunk, never split
    assert sink.take_ready(100) == chunks[4:]
    assert sink.take_ready(100) == []
    import streams.worker.consumer as consumer_module

    limit = consumer_module.SINK_LIMIT
    for i in range(limit // 10):
        sink.put(_chunk(1, range(i * 10, i * 10 + 10)))
    assert not sink.room.is_set()
    await sink.take(1)
    assert sink.room.is_set()
    assert sum(len(c) for c in sink.drop_all()) == limit - 10
    assert sink.size == 0


def test_the_private_bookkeeping_a_chunk_ack_writes_exists() -> None:
    """ack_chunk writes Consumer.ack's bookkeeping (faust/transport/consumer.py:825-853) for a whole chunk."""
    source = inspect.getsource(faust_consumer.Consumer.ack)
    for attribute in ("_committed_offset", "_acked_index", "_acked", "_n_acked", "_unacked_messages"):
        assert f"self.{attribute}" in source, attribute
    assert "notify(self._waiting_for_ack)" in source
    assert "with ack_lock" in source
    assert faust_tuples.ack_lock is not None
    new_offset = inspect.getsource(faust_consumer.Consumer._new_offset)
    assert "acked.sort()" in new_offset  # acked offsets need not arrive sorted
    wait_empty = inspect.getsource(faust_consumer.Consumer.wait_empty)
    assert "m.refcount" in wait_empty
    assert "_clean_unacked_messages" in wait_empty
    assert "message.acked" in inspect.getsource(faust_consumer.Consumer._clean_unacked_messages)


def test_the_fetch_hooks_the_drain_loop_calls_exist() -> None:
    base = faust_consumer.Consumer
    assert inspect.iscoroutinefunction(base._wait_next_records)
    assert list(inspect.signature(base._wait_next_records).parameters) == ["self", "timeout"]
    getmany = inspect.getsource(base.getmany)
    for guard in ("_wait_next_records(timeout)", "flow_active", "perform_seek", "_buffered_partitions"):
        assert guard in getmany, guard
    assert inspect.iscoroutinefunction(base.perform_seek)
    assert "_buffered_partitions" in inspect.getsource(base._reset_state)
    assert callable(faust_aiokafka.Consumer._to_message)
    record_fields = inspect.signature(ConsumerRecord).parameters
    for name in ("topic", "partition", "offset", "key", "value", "headers"):
        assert name in record_fields, name


async def test_a_chunk_ack_makes_its_offsets_committable() -> None:
    app = faust.App("hooks-ack", broker="kafka://127.0.0.1:1", store="memory://")
    install(app, ["hooks.topic"])
    app.topics.acking_topics.add("hooks.topic")  # as the conductor does for a subscribed topic
    consumer = app.consumer
    assert isinstance(consumer, BatchDrainConsumer)
    first, second = _chunk(0, range(100, 105)), _chunk(0, range(105, 109))
    consumer._committed_offset[first.tp] = 100
    consumer._unacked_messages.add(first)  # type: ignore[arg-type]
    consumer._unacked_messages.add(second)  # type: ignore[arg-type]
    consumer.ack_chunk(second)
    consumer.ack_chunk(second)  # twice: counted once
    assert consumer._new_offset(first.tp) is None  # offsets 100-104 not acked yet: nothing to commit
    consumer.ack_chunk(first)
    assert not consumer.unacked
    assert first.acked
    assert second.acked
    assert consumer._n_acked == 9
    assert consumer._new_offset(first.tp) == 109


async def test_the_aiokafka_producer_hooks_the_batch_sender_calls_exist() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")
    assert list(inspect.signature(producer._partition).parameters) == [
        "topic",
        "partition",
        "key",
        "value",
        "serialized_key",
        "serialized_value",
    ]
    assert inspect.iscoroutinefunction(producer.send_batch)
    assert inspect.iscoroutinefunction(producer.partitions_for)
    batch = producer.create_batch()
    assert batch.append(key=b"k", value=b"v", timestamp=None, headers=None) is not None
    assert batch.record_count() == 1
    sender_source = inspect.getsource(faust_aiokafka.Producer.on_start)
    assert "self._producer = self._new_producer()" in sender_source


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


def test_the_worker_can_fix_glibcs_mmap_threshold() -> None:
    # glibc raises the threshold after large frees and the worker's RSS then creeps up; the worker
    # fixes it at start (on a system without glibc the call reports False and changes nothing)
    import platform

    from streams.worker.app import fix_mmap_threshold

    assert fix_mmap_threshold() is (platform.libc_ver()[0] == "glibc")


def test_the_seek_back_hooks_exist_and_faust_seeks_through_the_overridden_method() -> None:
    # Faust's perform_seek (called when it drops fetched records, and around table recovery) seeks
    # through ``self.seek_to_committed``; the worker's override also rewinds never-committed partitions
    assert "self.seek_to_committed()" in inspect.getsource(faust_consumer.Consumer.perform_seek)
    assert BatchDrainConsumer.seek_to_committed is not faust_aiokafka.Consumer.seek_to_committed
    assert inspect.iscoroutinefunction(faust_aiokafka.AIOKafkaConsumerThread.seek_to_beginning)
    assert "offset and offset > 0" in inspect.getsource(AIOKafkaConsumer.seek_to_committed)


async def test_the_worker_producer_compresses_with_fast_lz4_and_kafka_can_read_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """streams/kafka/codec.py: both aiokafka batch builders call the replaced ``lz4_encode`` global;
    a batch built as the producer builds it decodes back to the same records."""
    for module in builders():  # restored after the test, so other tests see aiokafka as shipped
        monkeypatch.setattr(module, "lz4_encode", module.lz4_encode)
    use_fast_lz4()
    calls: list[int] = []

    def counting(payload: object) -> bytes:
        calls.append(len(payload))  # type: ignore[arg-type]
        return lz4_fast(payload)

    for module in builders():
        assert module.lz4_encode is lz4_fast
        monkeypatch.setattr(module, "lz4_encode", counting)
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", compression_type="lz4")
    batch = producer.create_batch()
    values = [orjson.dumps({"attemptId": f"a{i:05d}", "reason": "within budget " * 8}) for i in range(60)]
    for i, value in enumerate(values):
        assert batch.append(key=b"leader-%d" % (i % 7), value=value, timestamp=None, headers=None)
    buffer = batch._build()
    assert len(calls) == 1
    assert calls[0] > len(buffer)
    read = MemoryRecords(bytes(buffer)).next_batch()
    assert read is not None
    assert read.compression_type == 3
    assert [(r.key, r.value) for r in read] == [(b"leader-%d" % (i % 7), v) for i, v in enumerate(values)]
    # the fast level is LZ4's, decodable by the codec aiokafka (and any Kafka client) reads with
    assert lz4_decode(lz4_fast(b"x" * 100_000)) == b"x" * 100_000


def test_the_worker_compression_setting() -> None:
    assert Settings.from_env({}).compression == "lz4"
    assert Settings.from_env({"COPYBOT_COMPRESSION": "none"}).compression is None
    assert Settings.from_env({"COPYBOT_COMPRESSION": "zstd"}).compression == "zstd"
    with pytest.raises(SettingsError, match="COPYBOT_COMPRESSION='brotli'"):
        Settings.from_env({"COPYBOT_COMPRESSION": "brotli"})


async def test_the_state_records_producer_is_a_second_producer_with_fausts_settings() -> None:
    # Runtime.state_sender builds it with Faust's private Producer._new_producer (the settings Faust
    # gives its own producer); aiokafka keeps one request in flight per broker connection, which is
    # why the state records go out on a producer of their own
    assert "ignore_nodes=self._in_flight" in inspect.getsource(Sender._sender_routine)
    app = faust.App(
        "hooks-state-producer",
        broker="kafka://127.0.0.1:1",
        store="memory://",
        producer_linger_ms=0,
        producer_compression_type="lz4",
        producer_max_batch_size=1_000_000,
    )
    faust_producer: Any = app.producer
    second = faust_producer._new_producer()
    assert isinstance(second, AIOKafkaProducer)
    assert second is not faust_producer._producer
    assert second._compression_type == "lz4"
    assert second._message_accumulator._batch_size == 1_000_000
    assert second._sender._acks == faust_producer._new_producer()._sender._acks


def test_the_worker_fetches_up_to_its_partition_fetch_size() -> None:
    app = create_app(Settings.from_env({"COPYBOT_PARTITIONS": "2"}))
    assert app.conf.consumer_max_fetch_size == FETCH_BYTES_PER_PARTITION > 1024**2
    assert "max_partition_fetch_bytes=conf.consumer_max_fetch_size" in inspect.getsource(
        faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
    )
