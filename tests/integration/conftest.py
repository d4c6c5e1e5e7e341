"""Fixtures for integration tests that need a real Kafka broker (see streams/broker.py).

The broker jars come from the project-local cache (``.cache/kafka``, or ``$COPYBOT_KAFKA_CACHE``), fetched
with Maven the first time; the broker's data goes to a temporary folder and it listens on free ports, so a
developer's own broker on 9092 is left alone. Missing Java or Maven fails the tests: they are prerequisites,
not options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.devbroker import broker
from streams.devbroker.broker import free_ports

__all__ = ["free_ports"]


def broker_settings(data_dir: Path) -> broker.BrokerSettings:
    """Settings for a test broker: free ports, the given data dir, the shared jar cache."""
    port, controller_port = free_ports(2)
    return dataclasses.replace(
        broker.BrokerSettings.from_env(), port=port, controller_port=controller_port, data_dir=data_dir
    )


def start_or_fail(settings: broker.BrokerSettings) -> broker.BrokerHandle:
    """Start the broker; a missing Java/Maven or a broker that won't start fails the test with the reason."""
    try:
        return broker.start(settings)
    except broker.BrokerError as error:
        reason = str(error)
    pytest.fail(f"could not start the Kafka broker for the integration tests:\n{reason}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[broker.BrokerSettings]:
    """A real single-node Kafka broker shared by the whole test session; stopped at the end."""
    settings = broker_settings(tmp_path_factory.mktemp("kafka-data"))
    start_or_fail(settings)
    try:
        yield settings
    finally:
        broker.stop(settings)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: broker.BrokerSettings) -> str:
    """``bootstrap_servers`` of the session broker, e.g. ``"127.0.0.1:41234"``."""
    return broker.bootstrap(kafka_broker)


@pytest.fixture
def own_broker_settings(tmp_path: Path) -> Iterator[broker.BrokerSettings]:
    """Settings for a broker of the test's own (free ports, empty data dir, not started yet).

    For tests that stop and restart a broker (start it with ``broker.start``); whatever the test leaves
    running is stopped afterwards.
    """
    settings = broker_settings(tmp_path / "kafka-data")
    try:
        yield settings
    finally:
        broker.stop(settings)
