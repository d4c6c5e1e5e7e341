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
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from models.state import PartitionState
from models.summary import LeaderTally, summarize
from streams.cli.terminal import leader_summary_table
from streams.devbroker import broker
from streams.devbroker.harness import (
    ROOT,
    WorkerProcess,
    accepted_trades,
    finish_tick,
    partitioned_replay,
    read_to_end,
    read_until,
    tape_events,
    wait_until,
)
from streams.kafka.admin import create_topics
from streams.settings import COPY_ATTEMPTS, Settings
from streams.worker.records import merged_state

DEFAULT_TAPE = ROOT / "examples" / "sample-tape.jsonl"


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
    parser.set_defaults(func=_cmd_demo)


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


def _cmd_demo(args: argparse.Namespace) -> int:
    tape = Path(args.tape)
    if not tape.is_file():
        print(f"copybot demo: cannot read {tape}", file=sys.stderr)
        return 1
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    broker_settings = broker.BrokerSettings.from_env()
    started_broker = not broker.is_running(broker_settings)
    _step(f"Kafka broker on {broker.bootstrap(broker_settings)}" + (" (starting)" if started_broker else ""))
    try:
        broker.start(broker_settings)
    except broker.BrokerError as exc:
        print(f"copybot demo: {exc}", file=sys.stderr)
        return 1
    prefix = f"demo-{int(time.time())}"
    env = {
        **os.environ,
        "COPYBOT_BOOTSTRAP": broker.bootstrap(broker_settings),
        "COPYBOT_TOPIC_PREFIX": prefix,
        "COPYBOT_APP_ID": prefix,
        "COPYBOT_PARTITIONS": str(args.partitions),
        "COPYBOT_TICKS": "0",  # time comes from the tape's own ticks, as in a replay
        "COPYBOT_WORKER_DIR": str(ROOT / ".cache" / "worker" / prefix),
    }
    settings = Settings.from_env(env)
    worker = WorkerProcess("demo", env, out / "demo-worker.log")
    helpers: list[subprocess.Popen[bytes]] = []
    keep = False
    try:
        _step(f"topics {prefix}.* with {args.partitions} partitions")
        asyncio.run(create_topics(settings))
        _step(f"worker (log: {worker.log_path.relative_to(ROOT)})")
        worker.start(timeout_s=args.timeout)
        _step(f"publishing {tape.name} in file order")
        published = subprocess.run(
            [sys.executable, "-m", "streams.cli", "publish", str(tape), "--ordered", "--finish"],
            env=env,
            cwd=ROOT,
            check=False,
        )
        if published.returncode != 0:
            return published.returncode
        events = tape_events(tape)
        trades = accepted_trades(events)
        _step(f"waiting until all {len(trades):,} trades are accounted for")
        attempts = asyncio.run(
            read_until(settings.bootstrap, settings.topic(COPY_ATTEMPTS), _covers(trades), args.timeout)
        )
        unique = {a["attemptId"]: a for a in attempts}
        state = _live_state(settings)
        tallies: dict[str, LeaderTally] = defaultdict(LeaderTally)
        for attempt in unique.values():
            tallies[attempt["followedUserId"]].observe(attempt)
        print()
        print(leader_summary_table(summarize(state, dict(tallies))))
        executed = sum(a["decision"] == "EXECUTE" for a in unique.values())
        print(
            f"\n{len(trades):,} trades -> {len(unique):,} copy attempts ({executed:,} EXECUTE, "
            f"{len(unique) - executed:,} SKIP) on {args.partitions} partitions"
        )
        expected, _ = partitioned_replay(events, args.partitions, finish_tick(events, args.partitions))
        same = {a["attemptId"]: a for a in expected} == unique
        print(f"live decisions equal the decision core's replay of each partition: {'yes' if same else 'NO'}")
        url = _start_read_side(env, out / f"{prefix}.db", args.api_port, len(tallies), helpers, args.timeout)
        print(f"\ndashboard: {url}/config   (leaders: {url}/   API docs: {url}/docs)")
        keep = args.keep_running
        if keep:
            pids = " ".join(str(p.pid) for p in [worker.process, *helpers] if p is not None)
            print(f"left running: broker {settings.bootstrap}, worker, projector and API (topics {prefix}.*)")
            print(f"stop them with: kill {pids}; copybot kafka stop")
        else:
            print("(stopping everything; run `bash scripts/demo --keep-running` to keep the dashboard up)")
        return 0 if same else 1
    finally:
        if not keep:
            for process in helpers:
                process.terminate()
                process.wait(timeout=30)
            worker.stop()
            if started_broker:
                broker.stop(broker_settings)


def _start_read_side(
    env: dict[str, str],
    db: Path,
    port: int,
    leaders: int,
    processes: list[subprocess.Popen[bytes]],
    timeout_s: float,
) -> str:
    """Start the projector and the API on `db`; return the dashboard URL once it shows every leader."""
    url = f"http://127.0.0.1:{port}"
    _step(f"projector into {db.relative_to(ROOT)} and the dashboard on {url}")
    for args, log in (
        (["project", "--db", str(db)], "demo-projector.log"),
        (["api", "--db", str(db), "--port", str(port)], "demo-api.log"),
    ):
        with (ROOT / "out" / log).open("wb") as handle:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "streams.cli", *args],
                    env=env,
                    cwd=ROOT,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                )
            )

    def shows_every_leader() -> bool:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(
                    "the projector or the API exited; see out/demo-projector.log, out/demo-api.log"
                )
        try:
            with urllib.request.urlopen(f"{url}/api/budgeted-dynamic/summary", timeout=2) as response:
                body = orjson.loads(response.read())
        except OSError:
            return False
        rows = body if isinstance(body, list) else body.get("leaders", [])
        return len(rows) >= leaders

    wait_until(shows_every_leader, timeout_s, "the dashboard to show every leader", poll_s=0.25)
    return url


def _covers(trades: set[tuple[str, str]]) -> Any:
    def covered(values: list[dict[str, Any]]) -> bool:
        return trades <= {(a["followedUserId"], t) for a in values for t in a["tradeIds"]}

    return covered


def _live_state(settings: Settings) -> PartitionState:
    """The live partitions' saved state merged into one view (config and clock agree across them)."""
    changelog = f"{settings.app_id}-partition-state-changelog"
    latest: dict[bytes, bytes | None] = {}
    for record in read_to_end(settings.bootstrap, changelog):
        latest[record.key] = record.value
    return merged_state(latest, settings.partitions)
