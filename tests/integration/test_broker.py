"""The embedded Kafka broker (streams/broker.py) against the real client the project uses, aiokafka."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from streams.cli import kafka as kafka_cli
from streams.devbroker import broker

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name=topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, key=value)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(consumer: Any, count: int, deadline_s: float = DEADLINE_S) -> list[bytes]:
    """Read until ``count`` values arrived (fails after ``deadline_s``, showing what did arrive)."""
    values: list[bytes] = []
    deadline = time.monotonic() + deadline_s
    while len(values) < count:
        assert time.monotonic() < deadline, f"got {len(values)} of {count} messages within {deadline_s} s"
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            values.extend(record.value for record in records)
    return values


async def consume_in_group(bootstrap: str, topic: str, group: str, count: int) -> tuple[list[bytes], int]:
    """Consume ``count`` messages in a consumer group, commit, and return them with the committed total."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        values = await consume(consumer, count)
        await consumer.commit()
        committed = [await consumer.committed(tp) for tp in consumer.assignment()]
    finally:
        await consumer.stop()
    return values, sum(offset or 0 for offset in committed)


async def committed_total(bootstrap: str, topic: str, group: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        offsets = [await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        await consumer.stop()
    return sum(offset or 0 for offset in offsets)


def messages(count: int, tag: str) -> list[bytes]:
    return [f"{tag}-{i:05d}".encode() for i in range(count)]


def status_exit_code(settings: broker.BrokerSettings) -> int:
    return kafka_cli.main(
        [
            "status",
            "--port",
            str(settings.port),
            "--controller-port",
            str(settings.effective_controller_port),
            "--data-dir",
            str(settings.data_dir),
        ]
    )


def test_session_broker_is_running(kafka_broker: broker.BrokerSettings) -> None:
    assert broker.is_running(kafka_broker)
    assert broker.probe(kafka_broker.host, kafka_broker.port)
    assert kafka_broker.pid_file.is_file()


def test_status_reports_running_with_exit_code_0(
    kafka_broker: broker.BrokerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status_exit_code(kafka_broker) == broker.EXIT_RUNNING
    out = capsys.readouterr().out
    assert "running" in out
    assert broker.bootstrap(kafka_broker) in out
    assert broker.KAFKA_VERSION in out


def test_status_reports_stopped_with_exit_code_3(
    own_broker_settings: broker.BrokerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status_exit_code(own_broker_settings) == broker.EXIT_NOT_RUNNING
    assert "stopped" in capsys.readouterr().out


def test_starting_twice_is_idempotent(
    kafka_broker: broker.BrokerSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = int(kafka_broker.pid_file.read_text())
    handle = broker.start(kafka_broker)
    assert not handle.started_now
    assert handle.pid == pid
    assert handle.bootstrap == broker.bootstrap(kafka_broker)
    exit_code = kafka_cli.main(
        [
            "start",
            "--port",
            str(kafka_broker.port),
            "--controller-port",
            str(kafka_broker.effective_controller_port),
            "--data-dir",
            str(kafka_broker.data_dir),
        ]
    )
    assert exit_code == 0
    assert "already running" in capsys.readouterr().out
    assert int(kafka_broker.pid_file.read_text()) == pid
    assert broker.is_running(kafka_broker)


async def test_produce_and_consume_through_a_group_with_commit(kafka_bootstrap: str) -> None:
    topic, group, partitions = "broker-test-roundtrip", "broker-test-group", 3
    sent = messages(300, "roundtrip")
    await create_topic(kafka_bootstrap, topic, partitions)
    await produce(kafka_bootstrap, topic, sent)

    received, committed = await consume_in_group(kafka_bootstrap, topic, group, len(sent))

    assert sorted(received) == sent
    assert committed == len(sent)
    assert await committed_total(kafka_bootstrap, topic, group, partitions) == len(sent)


async def test_transactional_producer_commits_and_aborts(kafka_bootstrap: str) -> None:
    topic = "broker-test-transactions"
    await create_topic(kafka_bootstrap, topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id="broker-test-tx")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"committed-1")
        await producer.begin_transaction()
        await producer.send(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"committed-2")
            # consume-transform-produce: offsets committed atomically with the output
            await producer.send_offsets_to_transaction({TopicPartition(topic, 0): 1}, "broker-test-tx-group")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        received = await consume(consumer, 2)
        # Nothing follows the second committed message: the aborted one never reaches a read_committed reader.
        assert (await consumer.getmany(timeout_ms=500)) == {}
    finally:
        await consumer.stop()
    assert received == [b"committed-1", b"committed-2"]
    assert await committed_total(kafka_bootstrap, topic, "broker-test-tx-group", 1) == 1


async def test_restart_on_the_same_data_dir_keeps_messages_and_offsets(
    own_broker_settings: broker.BrokerSettings,
) -> None:
    settings = own_broker_settings
    bootstrap = broker.bootstrap(settings)
    topic, group, partitions = "broker-test-durable", "broker-test-durable-group", 2
    before = messages(100, "before")
    after = messages(50, "after")

    handle = await asyncio.to_thread(broker.start, settings)
    assert handle.started_now
    assert broker.is_running(settings)
    await create_topic(bootstrap, topic, partitions)
    await produce(bootstrap, topic, before)
    received, committed = await consume_in_group(bootstrap, topic, group, len(before))
    assert sorted(received) == before
    assert committed == len(before)

    assert await asyncio.to_thread(broker.stop, settings)
    assert not broker.is_running(settings)
    assert not settings.pid_file.exists()
    assert status_exit_code(settings) == broker.EXIT_NOT_RUNNING
    assert not await asyncio.to_thread(broker.stop, settings)  # stopping a stopped broker is fine

    restarted = await asyncio.to_thread(broker.start, settings)
    assert restarted.started_now
    assert restarted.pid != handle.pid
    assert broker.is_running(settings)

    # The group's committed position survived: it resumes after it and sees only what was produced since.
    await produce(bootstrap, topic, after)
    resumed, committed = await consume_in_group(bootstrap, topic, group, len(after))
    assert sorted(resumed) == after
    assert committed == len(before) + len(after)
    # Everything produced before the restart is still there.
    everything, _ = await consume_in_group(
        bootstrap, topic, "broker-test-fresh-group", len(before) + len(after)
    )
    assert sorted(everything) == sorted(before + after)

    assert await asyncio.to_thread(broker.stop, settings)
    assert not broker.is_running(settings)
