"""``copybot demo``: the whole live system on this machine, end to end, in one command.

It starts the embedded Kafka broker (unless one is running), creates a fresh set of topics, runs a
worker, publishes the sample tape in file order, waits until every trade is accounted for, prints the
per-leader budget summary with PnL, the settlement that freed a HARD budget, and whether the live
decisions, book events and state equal the decision core's replay of each partition, then stops what it
started — or leaves it running with ``--keep-running``.

Scenarios:
  paper    every EXECUTE fills at once on paper (system.fillModel "paper", the default).
  reports  system.fillModel "reports": an EXECUTE opens an order that reserves budget until execution
           reports say what happened. A simulated executor (streams/executor_sim.py, seeded by --seed)
           consumes the copy attempts and answers each EXECUTE on copybot.executions, keyed by leader:
           filled, partly filled, rejected, late, or never (the order expires). The replay is of each
           partition's log as stored in Kafka, so it includes the reports where the worker logged them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.summary import LeaderSummary
from models.units import usd
from streams.cli.main import command
from streams.cli.terminal import leader_summary_table
from streams.demo import (
    DEFAULT_TAPE,
    Expected,
    FreedBudget,
    LiveResult,
    compare_live,
    covers,
    freed_budget,
    log_replay,
    logged_reports,
    start_read_side,
    tape_replay,
)
from streams.devbroker import broker
from streams.devbroker.harness import (
    ROOT,
    WorkerProcess,
    accepted_trades,
    finish_tick,
    read_until,
    tape_events,
    wait_until,
)
from streams.errors import InputUnreadable
from streams.executor_sim import ExecutorThread, run_in_thread
from streams.kafka import create_topics
from streams.sample_tape import write
from streams.settings import Settings
from streams.topology import COPY_ATTEMPTS

SCENARIOS = ("paper", "reports")
REPORTS_RATE = 150.0
"""Events per second the reports scenario publishes at: the tape's clock then runs about 15 times as fast as
the wall clock, so the executor's answers arrive seconds (not minutes) of tape time after each decision."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the live system end to end on the sample tape and print the budget summary",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="paper",
        help="paper: every EXECUTE fills on paper (default); reports: system.fillModel reports, answered by "
        "a simulated executor",
    )
    parser.add_argument(
        "--tape",
        help="tape to publish (default: the sample tape; --scenario reports: the sample tape with "
        "system.fillModel reports, written to out/sample-tape-reports.jsonl)",
    )
    parser.add_argument("--partitions", type=int, default=8, help="decision partitions (default 8)")
    parser.add_argument(
        "--rate",
        type=float,
        help="publish at most N events per second (default: paper as fast as possible, reports "
        f"{REPORTS_RATE:g}, so the executor answers in tape time)",
    )
    parser.add_argument("--seed", type=int, default=7, help="--scenario reports: the executor's seed (7)")
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
    executor: ExecutorThread | None = None

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.stop()
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


def _report(result: LiveResult, expected: Expected, trades: int, partitions: int) -> None:
    """The live run's budget summary and counts, PnL per leader, and the settlement that freed a budget."""
    print()
    print(leader_summary_table(result.summary))
    executed = sum(a["decision"] == "EXECUTE" for a in result.attempts.values())
    print(
        f"\n{trades:,} trades -> {len(result.attempts):,} copy attempts ({executed:,} EXECUTE, "
        f"{len(result.attempts) - executed:,} SKIP), {len(result.book_events):,} book events on {partitions} "
        "partitions"
    )
    print(_pnl_line(result.summary))
    print(_freed_line(freed_budget(expected.outputs), result.summary))


def _signed(micros: int) -> str:
    return ("+" if micros > 0 else "") + usd(micros)


def _pnl_line(rows: list[LeaderSummary]) -> str:
    parts = [
        f"{r.label} {_signed(r.realized_pnl_micros + r.unrealized_pnl_micros)} "
        f"({_signed(r.realized_pnl_micros)} realized)"
        for r in rows
    ]
    return "PnL per leader (realized + unrealized): " + ", ".join(parts)


def _freed_line(freed: FreedBudget | None, rows: list[LeaderSummary]) -> str:
    if freed is None:
        return "no settlement freed a HARD budget in this run"
    label = next((r.label for r in rows if r.leader_id == freed.leader_id), freed.leader_id)
    s = freed.settlement
    outcome = "won" if s["payoutMicros"] == 1_000_000 else "lost" if s["payoutMicros"] == 0 else "paid out"
    return (
        f"a settlement freed a HARD budget: {s['marketId'] or s['assetId']} resolved ({outcome}), {label}'s "
        f"{s['shareMicros'] / 1e6:,.2f} shares settled for {usd(s['proceedsMicros'])} (realized "
        f"{_signed(s['realizedPnlMicros'])}); headroom {usd(freed.headroom_before)} -> "
        f"{usd(freed.headroom_after)}: {freed.capped_before} BUDGET_HARD_CAP_EXCEEDED skips in the minute "
        f"before, {freed.copied_after} BUYs copied in the minute after"
    )


def _orders_lines(result: LiveResult, executor: ExecutorThread) -> list[str]:
    sim = executor.sim
    plans = ", ".join(f"{name} {n:,}" for name, n in sorted(sim.plans.items(), key=lambda kv: -kv[1]))
    expired = [b for b in result.book_events if b["kind"] == "orderExpired"]
    partly = sum(b["filledShareMicros"] > 0 for b in expired)
    still_open = sum(r.open_orders for r in result.summary)
    reserved = sum(r.reserved_micros for r in result.summary)
    return [
        f"executor (seed {sim.seed}): answered {len(sim.answered):,} EXECUTEs with {executor.published:,} "
        f"execution reports ({plans})",
        f"orders: {len(expired):,} expired ({partly:,} of them partly filled), {still_open:,} still open at "
        f"the end with {usd(reserved)} of budget reserved",
    ]


def _publish_tape(demo: LiveDemo, args: argparse.Namespace, tape: Path) -> int:
    """Topics, the worker, and the tape published in file order; returns the publisher's exit code."""
    _step(f"topics {demo.prefix}.* with {args.partitions} partitions")
    asyncio.run(create_topics(demo.settings))
    _step(f"worker (log: {demo.worker.log_path.relative_to(ROOT)})")
    demo.worker.start(timeout_s=args.timeout)
    if args.scenario == "reports":
        _step(f"simulated executor (seed {args.seed}) answering EXECUTEs on {demo.prefix}.executions")
        demo.executor = run_in_thread(demo.settings, args.seed)
    rate = args.rate if args.rate is not None else REPORTS_RATE if args.scenario == "reports" else None
    paced = [] if rate is None else ["--rate", f"{rate:g}"]
    _step(f"publishing {tape.name} in file order" + (f" at {rate:g} events/s" if rate else ""))
    published = subprocess.run(
        [sys.executable, "-m", "streams.cli", "publish", str(tape), "--ordered", "--finish", *paced],
        env=demo.env,
        cwd=ROOT,
        check=False,
    )
    return published.returncode


def _settle_executor(demo: LiveDemo, attempts: list[Any], timeout_s: float) -> ExecutorThread:
    """Wait until the executor answered every EXECUTE, stop it (it publishes its late reports), and wait
    until the worker has copied every report into the decision log."""
    executor = demo.executor
    assert executor is not None
    executes = {a["attemptId"] for a in attempts if a["decision"] == "EXECUTE"}
    _step(f"waiting until the executor has answered all {len(executes):,} EXECUTEs")
    wait_until(lambda: executor.answered_all(executes), timeout_s, "the executor to answer every EXECUTE")
    executor.stop()
    demo.executor = None
    wait_until(
        lambda: logged_reports(demo.settings) >= executor.published,
        timeout_s,
        "the worker to copy every execution report into its leader's partition",
        poll_s=0.5,
    )
    return executor


def _decide_and_show(demo: LiveDemo, args: argparse.Namespace, tape: Path, out: Path) -> bool:
    """Wait for every trade's attempt, print the summary, start the read side; whether live equals replay."""
    events = tape_events(tape)
    trades = accepted_trades(events)
    _step(f"waiting until all {len(trades):,} trades are accounted for")
    settings = demo.settings
    attempts = asyncio.run(
        read_until(settings.bootstrap, settings.topic(COPY_ATTEMPTS), covers(trades), args.timeout)
    )
    executor = _settle_executor(demo, attempts, args.timeout) if args.scenario == "reports" else None
    if executor is None:
        expected = tape_replay(events, args.partitions, finish_tick(events, args.partitions))
    else:
        expected = log_replay(settings)
    result = compare_live(settings, expected, args.timeout)
    _report(result, expected, len(trades), args.partitions)
    if executor is not None:
        print("\n".join(_orders_lines(result, executor)))
    what = "the decision core's replay of each partition" + (" log" if executor else "")
    print(f"live decisions equal {what}: {'yes' if result.same else 'NO'}")
    leaders = len({a["followedUserId"] for a in attempts})
    db, url = out / f"{demo.prefix}.db", f"http://127.0.0.1:{args.api_port}"
    _step(f"projector into {db.relative_to(ROOT)} and the dashboard on {url}")
    start_read_side(demo.env, db, args.api_port, leaders, demo.helpers, args.timeout)
    print(f"\ndashboard: {url}/config   (leaders: {url}/   API docs: {url}/docs)")
    return result.same


def _tape(args: argparse.Namespace, out: Path) -> Path:
    if args.tape is not None:
        tape = Path(args.tape)
        if not tape.is_file():
            raise InputUnreadable(f"cannot read {tape}")
        return tape
    if args.scenario == "paper":
        return DEFAULT_TAPE
    tape = out / "sample-tape-reports.jsonl"
    with tape.open("wb") as handle:
        write(handle, fill_model="reports")
    return tape


def run(args: argparse.Namespace) -> int:
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    tape = _tape(args, out)
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
