"""``copybot demo``: the whole live system on this machine, end to end, in one command.

It starts the embedded Kafka broker (unless one is running), creates a fresh set of topics, runs a
worker, publishes the sample tape in file order, waits until every trade is accounted for, prints the
per-leader budget summary (and whether the live decisions equal the decision core's replay of each
partition), then stops what it started — or leaves it running with ``--keep-running``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.events import InputEvent
from models.summary import LeaderTally, summarize
from streams.cli.main import command
from streams.cli.terminal import leader_summary_table
from streams.demo import DEFAULT_TAPE, covers, live_state, start_read_side
from streams.devbroker import broker
from streams.devbroker.harness import (
    ROOT,
    WorkerProcess,
    accepted_trades,
    finish_tick,
    partitioned_replay,
    read_until,
    tape_events,
)
from streams.errors import InputUnreadable
from streams.kafka import create_topics
from streams.settings import Settings
from streams.topology import COPY_ATTEMPTS


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the live system end to end on the sample tape and print the budget summary",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--tape", default=str(DEFAULT_TAPE), help="tape to publish (default: the sample tape)"
    )
    parser.add_argument("--partitions", type=int, default=8, help="decision partitions (default 8)")
    parser.add_argument(
        "--keep-running", action="store_true", help="leave the broker and the worker running at the end"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the worker (300)")
    parser.add_argument("--api-port", type=int, default=8000, help="port of the dashboard/API (default 8000)")
    command(parser, run)


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


@dataclass
class LiveDemo:
    """What the demo started, so that it can stop exactly that."""

    prefix: str
    env: dict[str, str]
    settings: Settings
    worker: WorkerProcess
    broker_settings: broker.BrokerSettings
    started_broker: bool
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for process in self.helpers:
            process.terminate()
            process.wait(timeout=30)
        self.worker.stop()
        if self.started_broker:
            broker.stop(self.broker_settings)


def _start_broker(partitions: int, out: Path) -> LiveDemo:
    """The broker (started unless running) and the demo's environment: its own topic prefix and app id."""
    broker_settings = broker.BrokerSettings.from_env()
    started_broker = not broker.is_running(broker_settings)
    _step(f"Kafka broker on {broker.bootstrap(broker_settings)}" + (" (starting)" if started_broker else ""))
    broker.start(broker_settings)
    prefix = f"demo-{int(time.time())}"
    env = {
        **os.environ,
        "COPYBOT_BOOTSTRAP": broker.bootstrap(broker_settings),
        "COPYBOT_TOPIC_PREFIX": prefix,
        "COPYBOT_APP_ID": prefix,
        "COPYBOT_PARTITIONS": str(partitions),
        "COPYBOT_TICKS": "0",  # time comes from the tape's own ticks, as in a replay
        "COPYBOT_WORKER_DIR": str(ROOT / ".cache" / "worker" / prefix),
    }
    worker = WorkerProcess("demo", env, out / "demo-worker.log")
    return LiveDemo(prefix, env, Settings.from_env(env), worker, broker_settings, started_broker)


def _report(demo: LiveDemo, events: list[InputEvent], attempts: list[Any], partitions: int) -> bool:
    """Print the budget summary of the live run; returns whether it equals the core's partitioned replay."""
    unique = {a["attemptId"]: a for a in attempts}
    tallies: dict[str, LeaderTally] = defaultdict(LeaderTally)
    for attempt in unique.values():
        tallies[attempt["followedUserId"]].observe(attempt)
    print()
    print(leader_summary_table(summarize(live_state(demo.settings), dict(tallies))))
    executed = sum(a["decision"] == "EXECUTE" for a in unique.values())
    print(
        f"\n{len(accepted_trades(events)):,} trades -> {len(unique):,} copy attempts ({executed:,} EXECUTE, "
        f"{len(unique) - executed:,} SKIP) on {partitions} partitions"
    )
    expected, _ = partitioned_replay(events, partitions, finish_tick(events, partitions))
    same = {a["attemptId"]: a for a in expected} == unique
    print(f"live decisions equal the decision core's replay of each partition: {'yes' if same else 'NO'}")
    return same


def _publish_tape(demo: LiveDemo, args: argparse.Namespace, tape: Path) -> int:
    """Topics, the worker, and the tape published in file order; returns the publisher's exit code."""
    _step(f"topics {demo.prefix}.* with {args.partitions} partitions")
    asyncio.run(create_topics(demo.settings))
    _step(f"worker (log: {demo.worker.log_path.relative_to(ROOT)})")
    demo.worker.start(timeout_s=args.timeout)
    _step(f"publishing {tape.name} in file order")
    published = subprocess.run(
        [sys.executable, "-m", "streams.cli", "publish", str(tape), "--ordered", "--finish"],
        env=demo.env,
        cwd=ROOT,
        check=False,
    )
    return published.returncode


def _decide_and_show(demo: LiveDemo, args: argparse.Namespace, tape: Path, out: Path) -> bool:
    """Wait for every trade's attempt, print the summary, start the read side; whether live equals replay."""
    events = tape_events(tape)
    trades = accepted_trades(events)
    _step(f"waiting until all {len(trades):,} trades are accounted for")
    settings = demo.settings
    attempts = asyncio.run(
        read_until(settings.bootstrap, settings.topic(COPY_ATTEMPTS), covers(trades), args.timeout)
    )
    same = _report(demo, events, attempts, args.partitions)
    leaders = len({a["followedUserId"] for a in attempts})
    db, url = out / f"{demo.prefix}.db", f"http://127.0.0.1:{args.api_port}"
    _step(f"projector into {db.relative_to(ROOT)} and the dashboard on {url}")
    start_read_side(demo.env, db, args.api_port, leaders, demo.helpers, args.timeout)
    print(f"\ndashboard: {url}/config   (leaders: {url}/   API docs: {url}/docs)")
    return same


def run(args: argparse.Namespace) -> int:
    tape = Path(args.tape)
    if not tape.is_file():
        raise InputUnreadable(f"cannot read {tape}")
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    demo = _start_broker(args.partitions, out)
    keep = False
    try:
        published = _publish_tape(demo, args, tape)
        if published != 0:
            return published
        same = _decide_and_show(demo, args, tape, out)
        keep = args.keep_running
        if keep:
            pids = " ".join(str(p.pid) for p in [demo.worker.process, *demo.helpers] if p is not None)
            running = f"broker {demo.settings.bootstrap}, worker, projector and API"
            print(f"left running: {running} (topics {demo.prefix}.*)")
            print(f"stop them with: kill {pids}; copybot kafka stop")
        else:
            print("(stopping everything; run `bash scripts/demo --keep-running` to keep the dashboard up)")
        return 0 if same else 1
    finally:
        if not keep:
            demo.stop()
