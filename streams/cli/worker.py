"""``copybot worker``: the live decision worker (a Faust worker; :mod:`streams.worker.app`)."""

from __future__ import annotations

import argparse

from streams.cli.main import command


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser(
        "worker",
        help="run the live decision worker (a Faust worker) against the Kafka broker",
        description=(
            "Run a Faust worker: it consumes leader trades, snapshots and config changes, keeps "
            "per-leader state in changelog-backed tables, and emits copy attempts. Start more workers "
            "with the same COPYBOT_APP_ID to share the partitions. Settings come from COPYBOT_* "
            "environment variables (streams/settings.py): COPYBOT_BOOTSTRAP, COPYBOT_TOPIC_PREFIX, "
            "COPYBOT_PARTITIONS, COPYBOT_APP_ID, COPYBOT_TICKS (0: no wall-clock ticks, time moves only "
            "with the ticks in the log), COPYBOT_WORKER_DIR, COPYBOT_GUARANTEE."
        ),
    )
    worker.add_argument("--loglevel", default="info", help="log level (default info)")
    command(worker, run)


def run(args: argparse.Namespace) -> int:
    from streams.worker.app import run_worker

    return run_worker(args.loglevel)
