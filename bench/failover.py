"""Failover: how soon a killed worker's partitions decide again (issue 11, item 3).

    .venv/bin/python bench/failover.py [--kills 5] [--terms 2] [--rate 150] [--partitions 4]
                                       [--session-timeout-ms 6000] [--static]

Two ``copybot worker`` subprocesses on an embedded broker of the run's own (free ports, a temp dir),
driven with the chaos harness (:mod:`tests.integration.chaos`): the chaos setup config, then trades with
wall-clock times at `--rate` per second (ticks on) for the whole run. A watcher reads copy-attempts and
keeps, per decision partition, the producer timestamps of its attempts. Then, `--kills` times with
SIGKILL and `--terms` times with SIGTERM (a clean leave), alternating the victim, each `--settle-s`
after both workers are up and every partition decides:

- **failover**: for each of the victim's partitions (from the last assignment in its log), the time
  from the signal until that partition's first attempt made after the victim exited — i.e. by its new
  owner; and the longest stall of the survivor's own partitions meanwhile (eager rebalancing pauses
  them too);
- **restart**: the victim started again; the time from starting its process until its first attempt on
  a partition it was assigned (and until all of them decide).

Prints one line per kill and a summary; the worker logs stay in the printed work dir with ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams import native  # noqa: E402

if native.stale_message() is not None:  # measure the sources on disk, never an older build
    raise SystemExit(f"{Path(__file__).name}: {native.stale_message()}")

from streams.devbroker import broker  # noqa: E402
from streams.devbroker.harness import WorkerProcess  # noqa: E402
from streams.kafka.client import quiet_kafka_logs  # noqa: E402
from streams.settings import COPY_ATTEMPTS, TRADES  # noqa: E402
from streams.topology import leader_partition  # noqa: E402
from tests.integration.chaos import STEP_S, ChaosPlan, ChaosRun, now_ms, say, tail, wait_for  # noqa: E402
from tests.integration.chaos_input import ChaosInput, pick_leaders  # noqa: E402
from tests.integration.live import CopybotClient  # noqa: E402

ASSIGNED = "Setting newly assigned partitions"
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
DEADLINE_S = 120.0


@dataclass
class Stamps:
    """Per decision partition, the producer timestamps (ms) of its attempts, as they are read."""

    partitions: int
    by_partition: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))

    async def follow(self, bootstrap: str, topic: str) -> None:
        async with tail(bootstrap, topic) as consumer:
            while True:
                for records in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                    for r in records:
                        leader = orjson.loads(r.value)["followedUserId"]
                        self.by_partition[leader_partition(leader, self.partitions)].append(r.timestamp)

    def first_after(self, partition: int, at_ms: int) -> int | None:
        return next((t for t in self.by_partition[partition] if t > at_ms), None)

    def longest_stall_ms(self, partition: int, begin_ms: int, end_ms: int) -> int:
        """The longest time without an attempt on `partition` within [begin, end]."""
        points = [begin_ms, *(t for t in self.by_partition[partition] if begin_ms < t < end_ms), end_ms]
        return max(b - a for a, b in itertools.pairwise(points))

    def steady(self, since_ms: int) -> bool:
        """Every partition has decided since `since_ms`."""
        return all(self.first_after(p, since_ms) is not None for p in range(self.partitions))


def log_ms(line: str) -> int | None:
    match = LOG_TIME.match(line)
    if match is None:
        return None
    return int(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000)


def last_assignment(log_text: str, topic: str) -> tuple[set[int], int] | None:
    """The decision-log partitions of the last "Setting newly assigned partitions" table in a worker's
    log, and the time of that line (ms); None when there is none (yet)."""
    at = log_text.rfind(ASSIGNED)
    if at < 0:
        return None
    line_start = log_text.rfind("\n", 0, at) + 1
    when = log_ms(log_text[line_start:at])
    table = log_text[at:].split(" for group ", 1)[0]
    match = re.search(rf"\| {re.escape(topic)}\s+\| \{{([^}}]*)\}}", table)
    if when is None or "for group" not in log_text[at:]:
        return None
    return (_partition_set(match.group(1)) if match else set()), when


def _partition_set(text: str) -> set[int]:
    """Faust's partition set notation: ``0-3`` or ``1, 3``."""
    found: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return found


MILESTONES = (
    ("faust", "[^Worker]: Starting"),
    ("rebalancing", "because it is rebalancing"),
    ("joined", "Joined group"),
    ("assigned", ASSIGNED),
    ("recovered", "[^---Recovery]: Recovery complete"),
    ("ready", "[^---Recovery]: Worker ready"),
    ("restored", "restored:"),
)
"""Lines of a worker's log that mark the steps of a rebalance (the first of each after a moment)."""


def milestones(log_text: str, since_ms: int) -> str:
    """When each milestone first appears in a log after `since_ms`, as seconds after it."""
    seen: dict[str, int] = {}
    for line in log_text.splitlines():
        when = log_ms(line)
        if when is None or when < since_ms:
            continue
        for name, marker in MILESTONES:
            if name not in seen and marker in line:
                seen[name] = when
    return " ".join(f"{name}+{(seen[name] - since_ms) / 1000:.1f}" for name, _ in MILESTONES if name in seen)


@dataclass
class Failover:
    signal_name: str
    victim: str
    partitions: dict[int, float]
    """The victim's partitions: seconds from the signal to their first attempt by the new owner."""
    survivor_stall_s: float
    exit_s: float = 0.0
    """From the signal until the victim's process was gone."""
    restart_first_s: float = 0.0
    restart_all_s: float = 0.0
    restart_stall_s: float = 0.0
    """The longest stall of any partition while the restarted worker joined."""
    survivor_steps: str = ""
    restart_steps: str = ""

    def line(self) -> str:
        parts = ", ".join(f"p{p} {s:.1f}s" for p, s in sorted(self.partitions.items()))
        return (
            f"{self.signal_name} {self.victim}: failover {max(self.partitions.values()):.1f}s ({parts}); "
            f"survivor's partitions stalled {self.survivor_stall_s:.1f}s; exit {self.exit_s:.1f}s; "
            f"restart → first decision {self.restart_first_s:.1f}s, all its partitions "
            f"{self.restart_all_s:.1f}s (longest stall meanwhile {self.restart_stall_s:.1f}s)\n"
            f"    survivor after the signal: {self.survivor_steps}\n"
            f"    restarted worker after its start: {self.restart_steps}"
        )


@dataclass
class FailoverBench:
    run: ChaosRun
    stamps: Stamps
    settle_s: float

    @property
    def trades_topic(self) -> str:
        return self.run.settings.topic(TRADES)

    async def wait_steady(self) -> None:
        """Every worker ready and every partition deciding, then `settle_s` more (a worker that has
        just started is still reading its standby changelogs; killing its peer then makes it read the
        rest before it decides, which the first runs showed as 5–6 s of recovery)."""
        await wait_for(self.run.all_ready, DEADLINE_S, "every worker to be ready")
        since = now_ms()
        await wait_for(lambda: self.stamps.steady(since), DEADLINE_S, "every partition to decide")
        await asyncio.sleep(self.settle_s)  # the schedule: the kill comes this long after steady

    async def cycle(self, victim: WorkerProcess, sig: signal.Signals) -> Failover:
        await self.wait_steady()
        owned = last_assignment(victim.current_log(), self.trades_topic)
        if owned is None or not owned[0]:
            raise RuntimeError(f"{victim.name} owns no partition")
        parts = owned[0]
        others = set(range(self.stamps.partitions)) - parts
        sent = now_ms()
        await asyncio.to_thread(victim.kill, sig)  # returns once the process is gone
        gone = now_ms()

        def moved() -> bool:
            return all(self.stamps.first_after(p, gone) is not None for p in parts)

        await wait_for(moved, DEADLINE_S, f"{victim.name}'s partitions to decide again")
        firsts = {p: self.stamps.first_after(p, gone) or 0 for p in parts}
        done = max(firsts.values())
        stall = max((self.stamps.longest_stall_ms(p, sent, done) for p in others), default=0)
        result = Failover(
            sig.name, victim.name, {p: (t - sent) / 1000 for p, t in firsts.items()}, stall / 1000
        )
        result.exit_s = (gone - sent) / 1000
        survivor = next(w for w in self.run.workers if w is not victim)
        result.survivor_steps = milestones(survivor.current_log(), sent)
        await self.restart(victim, result)
        say(result.line())
        return result

    async def restart(self, victim: WorkerProcess, result: Failover) -> None:
        started = now_ms()
        victim.start(wait_ready=False)

        def deciding() -> bool:
            owned = last_assignment(victim.current_log(), self.trades_topic)
            if owned is None or not owned[0]:
                return False
            return all(self.stamps.first_after(p, owned[1]) is not None for p in owned[0])

        await wait_for(deciding, DEADLINE_S, f"{victim.name} to decide after its restart")
        owned = last_assignment(victim.current_log(), self.trades_topic)
        assert owned is not None
        firsts = [self.stamps.first_after(p, owned[1]) or 0 for p in owned[0]]
        result.restart_first_s = (min(firsts) - started) / 1000
        result.restart_all_s = (max(firsts) - started) / 1000
        result.restart_steps = milestones(victim.current_log(), started)
        result.restart_stall_s = (
            max(self.stamps.longest_stall_ms(p, started, max(firsts)) for p in range(self.stamps.partitions))
            / 1000
        )


async def publish_steadily(run: ChaosRun, client: CopybotClient, source: ChaosInput) -> None:
    """Trades from every leader at the plan's rate (wall-clock detect times) until cancelled."""
    started, step = time.monotonic(), 0
    while True:
        step += 1
        for message in source.step(1.0, now_ms()):
            await run.send(client, message)
        if step % 25 == 0:
            await run.flush(client)
        await asyncio.sleep(max(0.0, started + step * STEP_S - time.monotonic()))  # pacing the publisher


async def bench(run: ChaosRun, args: argparse.Namespace) -> list[Failover]:
    plan = run.plan
    run.make_workers()
    for worker in run.workers if args.static else []:
        worker.env = {**worker.env, "COPYBOT_INSTANCE_ID": f"{run.prefix}-{worker.name}"}
    for worker in run.workers:
        worker.start(wait_ready=False)
    for worker in run.workers:
        await asyncio.to_thread(worker.wait_ready, DEADLINE_S)
    leaders = pick_leaders(plan.partitions, plan.leaders_per_partition)
    source = ChaosInput(plan.seed, leaders, max(1, round(plan.trades_per_s * STEP_S)), 0.0)
    stamps = Stamps(plan.partitions)
    watcher = asyncio.create_task(stamps.follow(run.bootstrap, run.settings.topic(COPY_ATTEMPTS)))
    results: list[Failover] = []
    async with CopybotClient(run.settings, create_topics=False, client_id="failover") as client:
        await run.publish_setup(client, source)
        publisher = asyncio.create_task(publish_steadily(run, client, source))
        try:
            failover = FailoverBench(run, stamps, args.settle_s)
            signals = [signal.SIGKILL] * args.kills + [signal.SIGTERM] * args.terms
            for n, sig in enumerate(signals):
                results.append(await failover.cycle(run.workers[n % len(run.workers)], sig))
        finally:
            publisher.cancel()
            watcher.cancel()
    return results


def summary(results: list[Failover]) -> str:
    lines = [r.line() for r in results]
    for name in ("SIGKILL", "SIGTERM"):
        worst = [max(r.partitions.values()) for r in results if r.signal_name == name]
        if worst:
            lines.append(
                f"{name}: failover (slowest partition per kill) median {statistics.median(worst):.1f}s, "
                f"max {max(worst):.1f}s over {len(worst)}"
            )
    restarts = [r.restart_first_s for r in results]
    if restarts:
        lines.append(
            f"restart → first decision median {statistics.median(restarts):.1f}s, max {max(restarts):.1f}s"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs (default 5)")
    parser.add_argument("--terms", type=int, default=2, help="SIGTERMs (default 2)")
    parser.add_argument("--rate", type=int, default=150, help="trades per second (default 150)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--session-timeout-ms", type=int, default=None, help="COPYBOT_SESSION_TIMEOUT_MS")
    parser.add_argument("--settle-s", type=float, default=5.0, help="steady time before each kill")
    parser.add_argument("--static", action="store_true", help="static membership (COPYBOT_INSTANCE_ID)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (worker logs)")
    args = parser.parse_args()
    quiet_kafka_logs()
    workdir = Path(tempfile.mkdtemp(prefix="copybot-failover-"))
    settings = broker.on_free_ports(workdir / "kafka")
    plan = ChaosPlan(seed=args.seed, partitions=args.partitions, trades_per_s=args.rate, kills=0, malformed=0)
    run = ChaosRun(plan, settings, workdir)
    if args.session_timeout_ms is not None:  # the workers' environment starts from this process's
        os.environ["COPYBOT_SESSION_TIMEOUT_MS"] = str(args.session_timeout_ms)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            broker.start(settings)
        results = asyncio.run(bench(run, args))
    finally:
        run.close()
        with contextlib.redirect_stdout(sys.stderr):
            broker.stop(settings)
        if args.keep:
            say(f"worker logs: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(summary(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
