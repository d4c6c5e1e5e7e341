"""Create copybot's topics (idempotently) with the partition counts the topology needs.

``copybot topics create`` (or :func:`create_topics` / :func:`ensure_topics` from code) creates every topic of
:mod:`streams.topology` that is missing and checks the ones that exist:

- the leader-keyed topics (leader-trades, portfolio-snapshots, copy-attempts) must all have
  ``settings.partitions`` partitions, because the worker copies portfolio-snapshots partition p into
  leader-trades partition p and relies on the default partitioner putting a leader in the same partition
  of each; a mismatch is an error naming the topic (Kafka cannot shrink a topic, so delete it or change
  ``COPYBOT_PARTITIONS``);
- config-changes must have exactly one partition (its order is the config's history);
- dead-letters and config-reports are reports; any partition count is accepted.

config-changes is created with ``retention.ms=-1``: every reader folds it from the beginning, so a broker
whose default retention deletes old messages would silently lose configuration.

Why create topics up front: the broker runs with ``auto.create.topics.enable=true`` and aiokafka asks for
auto-creation in every metadata request that names a topic, so the first producer or consumer touching a
missing topic would create it with the broker's ``num.partitions`` (1), not ``COPYBOT_PARTITIONS``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.errors import TopicError
from streams.kafka.connect import make_admin, partition_counts
from streams.kafka.errors import kafka_errors
from streams.settings import Settings
from streams.topology import ALL_TOPICS, CONFIG_CHANGES, INGEST_CHECKPOINTS, LEADER_KEYED, MARKET_EVENTS

__all__ = [
    "TopicError",
    "TopicStatus",
    "all_topics",
    "create_topics",
    "ensure_topics",
    "group_min_session_timeout_ms",
]

TOPIC_ALREADY_EXISTS = 36
"""Kafka error code of CreateTopics for a topic that exists (a concurrent create won the race)."""

METADATA_WAIT_S = 30.0
"""How long to wait for newly created topics to show up in the cluster metadata."""

UNREACHABLE_HINT = " (is the broker running? `copybot kafka start`)"
"""Appended to the error when :func:`ensure_topics` cannot reach the broker (callers may pass their own)."""

TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    CONFIG_CHANGES: {"retention.ms": "-1"},
    MARKET_EVENTS: {"retention.ms": "-1"},  # a resolution is read once per partition, whenever
    INGEST_CHECKPOINTS: {"cleanup.policy": "compact"},  # newest record per wallet
}
"""Per-topic settings for topics created here (existing topics are left as they are)."""


@dataclass(frozen=True, slots=True)
class TopicStatus:
    """One copybot topic after :func:`ensure_topics`."""

    name: str
    partitions: int
    created: bool


def all_topics() -> tuple[str, ...]:
    """Base names of every topic copybot uses (leader-keyed first)."""
    return ALL_TOPICS


def _strict(base: str) -> bool:
    """Whether an existing topic must have exactly the expected partition count."""
    return base in LEADER_KEYED or base == CONFIG_CHANGES


async def ensure_topics(
    settings: Settings, replication_factor: int = 1, *, hint: str = UNREACHABLE_HINT
) -> list[TopicStatus]:
    """Create the missing topics, check the existing ones; raises :class:`TopicError` on a mismatch.

    Raises :class:`~streams.errors.KafkaUnavailable` (its message ends with `hint`) when Kafka cannot be
    reached.
    """
    with kafka_errors(f"cannot reach Kafka at {settings.bootstrap}", hint):
        return await _ensure_topics(settings, replication_factor)


async def _ensure_topics(settings: Settings, replication_factor: int) -> list[TopicStatus]:
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = await partition_counts(admin)
        wanted = {settings.topic(base): (base, settings.partitions_of(base)) for base in all_topics()}
        _check_existing(existing, wanted)
        missing = [name for name in wanted if name not in existing]
        created: set[str] = set()
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=name,
                        num_partitions=wanted[name][1],
                        replication_factor=replication_factor,
                        topic_configs=TOPIC_CONFIGS.get(wanted[name][0], {}),
                    )
                    for name in missing
                ]
            )
            problems = []
            for entry in response.topic_errors:
                name, code = entry[0], entry[1]
                message = entry[2] if len(entry) > 2 else None
                if code == 0:
                    created.add(name)
                elif code != TOPIC_ALREADY_EXISTS:
                    problems.append(f"{name}: Kafka error {code}{f' ({message})' if message else ''}")
            if problems:
                raise TopicError("could not create topics: " + "; ".join(problems))
            existing = await _wait_for_metadata(admin, set(missing))
            _check_existing(existing, wanted)
        return [TopicStatus(name, existing[name], name in created) for name in wanted]
    finally:
        await admin.close()


async def create_topics(settings: Settings, replication_factor: int = 1) -> list[str]:
    """Idempotently create copybot's topics; returns the full names of the topics created now."""
    return [s.name for s in await ensure_topics(settings, replication_factor) if s.created]


def _check_existing(existing: dict[str, int], wanted: dict[str, tuple[str, int]]) -> None:
    for name, (base, expected) in wanted.items():
        actual = existing.get(name)
        if actual is not None and actual != expected and _strict(base):
            if base in LEADER_KEYED:
                hint = (
                    f"the leader-keyed topics ({', '.join(LEADER_KEYED)}) must all have COPYBOT_PARTITIONS "
                    f"partitions ({expected} now); set COPYBOT_PARTITIONS={actual} to use the existing "
                    f"topics, or delete {name} (Kafka cannot reduce a topic's partitions, and adding "
                    "some moves leaders to other partitions)"
                )
            else:
                hint = "its order is the config history; delete it and create it with 1 partition"
            raise TopicError(
                f"topic {name} exists with {actual} partitions but copybot needs {expected}: {hint}"
            )


async def _wait_for_metadata(admin: Any, names: set[str]) -> dict[str, int]:
    """Cluster metadata once every topic in `names` is visible (new topics lag a little)."""
    deadline = time.monotonic() + METADATA_WAIT_S
    while True:
        counts = await partition_counts(admin)
        if names <= counts.keys():
            return counts
        if time.monotonic() > deadline:
            raise TopicError(
                f"created topics {', '.join(sorted(names - counts.keys()))} but they did not appear in the "
                f"cluster metadata within {METADATA_WAIT_S:.0f} s"
            )
        await asyncio.sleep(0.1)  # polling the broker for a condition, with a deadline


MIN_SESSION_TIMEOUT = "group.min.session.timeout.ms"


async def group_min_session_timeout_ms(settings: Settings) -> int | None:
    """The smallest session timeout the brokers accept from a consumer group member (the largest
    ``group.min.session.timeout.ms`` of any broker), or None when it cannot be read."""
    admin = make_admin(settings, "copybot-config")
    await admin.start()
    try:
        brokers = (await admin.describe_cluster())["brokers"]
        resources = [
            ConfigResource(ConfigResourceType.BROKER, str(b["node_id"]), configs={MIN_SESSION_TIMEOUT: None})
            for b in brokers
        ]
        found = [
            int(entry["config_value"])
            for response in await admin.describe_configs(resources)
            for resource in response.to_object()["resources"]
            for entry in resource["config_entries"]
            if entry["config_names"] == MIN_SESSION_TIMEOUT and entry["config_value"]
        ]
        return max(found, default=None)
    except Exception:  # an old or locked-down broker: the caller keeps its setting
        return None
    finally:
        await admin.close()
