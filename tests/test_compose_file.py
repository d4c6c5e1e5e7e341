"""docker-compose.kafka.yml must run the same Kafka, configured the same way, as streams/broker.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.devbroker import broker

COMPOSE_FILE = Path(__file__).resolve().parents[1] / "docker-compose.kafka.yml"

# Environment variables read by the apache/kafka image's launcher, not broker properties.
LAUNCHER_VARIABLES = {"CLUSTER_ID", "KAFKA_HEAP_OPTS"}
# Properties whose value is container plumbing: the data path inside the container.
CONTAINER_SPECIFIC = {"log.dirs"}
CONTAINER_DATA_DIR = "/var/lib/kafka/data"


def env_name(key: str) -> str:
    """The apache/kafka image's spelling of a property: ``a.b.c`` → ``KAFKA_A_B_C``."""
    return "KAFKA_" + key.upper().replace(".", "_")


def default_properties() -> dict[str, str]:
    """The properties of the default local broker (127.0.0.1:9092, controller 9093), as clients see it."""
    return broker.server_properties(broker.BrokerSettings())


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    services = document["services"]
    assert list(services) == ["kafka"], f"expected exactly one service 'kafka' in {COMPOSE_FILE}"
    kafka: dict[str, Any] = services["kafka"]
    return kafka


@pytest.fixture(scope="module")
def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service["environment"]
    assert isinstance(env, dict), "write the environment as a mapping (NAME: value)"
    return {str(name): str(value) for name, value in env.items()}


def test_image_is_the_same_kafka_version(service: dict[str, Any]) -> None:
    assert service["image"] == f"apache/kafka:{broker.KAFKA_VERSION}"


def test_port_9092_is_published(service: dict[str, Any]) -> None:
    assert any(
        str(port).endswith(f"{broker.DEFAULT_PORT}:{broker.DEFAULT_PORT}") for port in service["ports"]
    )


def test_cluster_id_matches(environment: dict[str, str]) -> None:
    assert environment["CLUSTER_ID"] == broker.CLUSTER_ID


@pytest.mark.parametrize("key", sorted(set(default_properties()) - CONTAINER_SPECIFIC))
def test_property_matches_server_properties(environment: dict[str, str], key: str) -> None:
    expected = default_properties()[key]
    name = env_name(key)
    assert name in environment, f"{COMPOSE_FILE.name} lacks {name} (server_properties has {key}={expected})"
    actual = environment[name]
    if key == "listeners":
        # In the container PLAINTEXT binds every interface so the published port reaches it.
        actual = actual.replace("0.0.0.0", broker.DEFAULT_HOST)
    assert actual == expected, f"{name}={actual!r} but server_properties() has {key}={expected!r}"


def test_data_lives_in_a_named_volume(service: dict[str, Any], environment: dict[str, str]) -> None:
    assert environment[env_name("log.dirs")] == CONTAINER_DATA_DIR
    mounts = [str(volume).split(":") for volume in service["volumes"]]
    sources = [parts[0] for parts in mounts if len(parts) >= 2 and parts[1] == CONTAINER_DATA_DIR]
    assert len(sources) == 1, f"mount one volume at {CONTAINER_DATA_DIR}"
    declared = yaml.safe_load(COMPOSE_FILE.read_text()).get("volumes") or {}
    assert sources[0] in declared, f"{sources[0]!r} must be a named volume declared under 'volumes:'"


def test_no_setting_only_in_the_compose_file(environment: dict[str, str]) -> None:
    known = {env_name(key) for key in default_properties()} | LAUNCHER_VARIABLES
    extra = sorted(set(environment) - known)
    assert not extra, f"{extra} are set in {COMPOSE_FILE.name} but not in broker.server_properties()"
