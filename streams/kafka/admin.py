"""Create copybot's topics (idempotently) with the partition counts the topology needs.

``copybot topics create`` (or :func:`create_topics` / :func:`ensure_topics` from code) creates every topic of
:mod:`streams.settings` that is missing and checks the ones that exist:

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

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from streams.settings import (
    CONFIG_CHANGES,
    INGEST_CHECKPOINTS,
    LEADER_KEYED,
    MARKET_EVENTS,
    SINGLE_PARTITION,
    Settings,
    SettingsError,
)

TOPIC_ALREADY_EXISTS = 36
"""Kafka error code of CreateTopics for a topic that exists (a concurrent create won the race)."""

METADATA_WAIT_S = 30.0
"""How long to wait for newly created topics to show up in the cluster metadata."""

TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    CONFIG_CHANGES: {"retention.ms": "-1"},
    MARKET_EVENTS: {"retention.ms": "-1"},  # a resolution is read once per partition, whenever
    INGEST_CHECKPOINTS: {"cleanup.policy": "compact"},  # newest record per wallet
}
"""Per-topic settings for topics created here (existing topics are left as they are)."""


class TopicError(RuntimeError):
    """A topic exists with a shape copybot cannot use, or could not be created; the message says which."""


@dataclass(frozen=True, slots=True)
class TopicStatus:
    """One copybot topic after :func:`ensure_topics`."""

    name: str
    partitions: int
    created: bool


def all_topics() -> tuple[str, ...]:
    """Base names of every topic copybot uses (leader-keyed first)."""
    return (*LEADER_KEYED, *SINGLE_PARTITION)


def _strict(base: str) -> bool:
    """Whether an existing topic must have exactly the expected partition count."""
    return base in LEADER_KEYED or base == CONFIG_CHANGES


async def _partition_counts(admin: Any) -> dict[str, int]:
    # Metadata for *all* topics: naming the topics would ask the broker to auto-create the missing ones.
    return {
        t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(None) if t["error_code"] == 0
    }


async def ensure_topics(settings: Settings, replication_factor: int = 1) -> list[TopicStatus]:
    """Create the missing topics, check the existing ones; raises :class:`TopicError` on a mismatch.

    Raises ``aiokafka.errors.KafkaError`` (e.g. ``KafkaConnectionError``) when Kafka cannot be reached.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id="copybot-topics")
    await admin.start()
    try:
        existing = await _partition_counts(admin)
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
        counts = await _partition_counts(admin)
        if names <= counts.keys():
            return counts
        if time.monotonic() > deadline:
            raise TopicError(
                f"created topics {', '.join(sorted(names - counts.keys()))} but they did not appear in the "
                f"cluster metadata within {METADATA_WAIT_S:.0f} s"
            )
        await asyncio.sleep(0.1)  # polling the broker for a condition, with a deadline


# --- command line -------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``copybot topics create``."""
    topics = subparsers.add_parser(
        "topics",
        help="create copybot's Kafka topics",
        description=(
            "Manage copybot's Kafka topics (names from COPYBOT_TOPIC_PREFIX, broker from COPYBOT_BOOTSTRAP)."
        ),
    )
    actions = topics.add_subparsers(title="actions", metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create the missing topics and check the existing ones (idempotent)",
        description=(
            "Create every copybot topic that is missing and check the ones that exist. The leader-keyed "
            f"topics ({', '.join(LEADER_KEYED)}) get COPYBOT_PARTITIONS partitions (default 8) and must all "
            f"have that many; {', '.join(SINGLE_PARTITION)} get one partition. Prints a table of topic, "
            "partitions and whether it was created now. Exit code 0 on success, 1 if Kafka cannot be "
            "reached or an existing topic has the wrong partition count, 2 for bad settings."
        ),
    )
    create.add_argument(
        "--partitions",
        type=int,
        metavar="N",
        help="partitions of the leader-keyed topics (overrides COPYBOT_PARTITIONS; every command must agree)",
    )
    create.add_argument(
        "--replication-factor",
        type=int,
        default=1,
        metavar="R",
        help="replication factor of new topics (default 1: a single development broker)",
    )
    create.set_defaults(func=_cmd_create)
    topics.set_defaults(func=lambda args: _no_action(topics))


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _cmd_create(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from streams.cli.terminal import table
    from streams.kafka.client import quiet_kafka_logs

    quiet_kafka_logs()
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"copybot topics create: {exc}", file=sys.stderr)
        return 2
    if args.partitions is not None:
        if args.partitions < 1:
            print("copybot topics create: --partitions must be ≥ 1", file=sys.stderr)
            return 2
        settings = replace(settings, partitions=args.partitions)
    try:
        statuses = asyncio.run(ensure_topics(settings, args.replication_factor))
    except TopicError as exc:
        print(f"copybot topics create: {exc}", file=sys.stderr)
        return 1
    except (KafkaError, OSError) as exc:
        print(
            f"copybot topics create: cannot reach Kafka at {settings.bootstrap}: {exc} "
            "(is the broker running? `copybot kafka start`)",
            file=sys.stderr,
        )
        return 1
    rows = [[s.name, str(s.partitions), "created" if s.created else "existing"] for s in statuses]
    print(table(["topic", "partitions", "status"], rows, [False, True, False]))
    return 0
