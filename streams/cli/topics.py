"""``copybot topics create``: create copybot's Kafka topics (see :mod:`streams.kafka.admin`)."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace

from streams.cli.main import command, command_group
from streams.cli.terminal import table
from streams.errors import UsageError
from streams.kafka import ensure_topics, quiet_kafka_logs
from streams.settings import Settings
from streams.topology import LEADER_KEYED, SINGLE_PARTITION


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = command_group(
        sub,
        "topics",
        help="create copybot's Kafka topics",
        description=(
            "Manage copybot's Kafka topics (names from COPYBOT_TOPIC_PREFIX, broker from COPYBOT_BOOTSTRAP)."
        ),
    )
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
    command(create, run_create)


def run_create(args: argparse.Namespace) -> int:
    quiet_kafka_logs()
    settings = Settings.from_env()
    if args.partitions is not None:
        if args.partitions < 1:
            raise UsageError("--partitions must be ≥ 1")
        settings = replace(settings, partitions=args.partitions)
    statuses = asyncio.run(ensure_topics(settings, args.replication_factor))
    rows = [[s.name, str(s.partitions), "created" if s.created else "existing"] for s in statuses]
    print(table(["topic", "partitions", "status"], rows, [False, True, False]))
    return 0
