"""A chaos run of the live system, driven only from the outside (SPEC 8, issue 11).

Worker subprocesses (``python -m streams.cli worker``, configured by COPYBOT_* variables) in one group on
a broker of the run's own; a seeded publisher sends wall-clock trades, snapshots, config changes and
malformed messages at a steady rate while a seeded controller SIGKILLs random workers (restarted after
0–5 s) and stops and restarts the broker once. Then the workers are restarted without ticks and waited
for until their group has consumed every input partition to its end and no attempt has been published
for a while; everything is read back from Kafka and judged by :mod:`tests.integration.chaos_check`.

    .venv/bin/python -m tests.integration.chaos --seed 3 [--trades 20000] [--kills 10]

runs it on a broker of its own and prints the verdict (exit 1 when it fails).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from streams.devbroker import broker
from streams.devbroker.broker import free_ports
from streams.devbroker.harness import READY_LINE, WorkerProcess, read_to_end
from streams.kafka.admin import create_topics
from streams.kafka.client import quiet_kafka_logs
from streams.settings import CONFIG_CHANGES, COPY_ATTEMPTS, DEAD_LETTERS, SNAPSHOTS, TRADES, Settings
from tests.integration.chaos_check import AttemptRecord, ChaosRecords, ChaosVerdict, judge, render
from tests.integration.chaos_input import ChaosInput, Message, pick_leaders, setup_changes, timed_changes
from tests.integration.live import CopybotClient

STEP_S = 0.02
"""Publishing period: every step sends `trades_per_step` trades (and now and then more)."""


def now_ms() -> int:
    return int(time.time() * 1000)


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ChaosPlan:
    seed: int = 11
    trades: int = 20_000
    partitions: int = 4
    workers: int = 2
    kills: int = 10
    trades_per_s: int = 150
    malformed: int = 150
    leaders_per_partition: int = 3
    max_restart_delay_s: float = 5.0
    whole_deadline_s: float = 20.0
    """Before a kill, how long to wait for every worker to be ready (5 s restart + 10 s failover + slack)."""
    resume_limit_s: float = 60.0
    """After the broker restart, how long every partition may take to decide again. Workers whose sends
    were pending through the outage exit (by design) and start again, so this is a broker restart's
    recovery, bounded on its own; the gap limit covers everything else (kills, rejoins)."""
    gap_limit_s: float = 15.0
    cover_deadline_s: float = 120.0
    """After publishing, how long the attempts may take to cover every trade (the rest count as lost)."""
    settle_deadline_s: float = 180.0
    ticks: bool = True

    @property
    def publish_s(self) -> float:
        return self.trades / self.trades_per_s


@dataclass
class Timeline:
    """What the controller did, in wall-clock ms."""

    kills: list[tuple[int, str]] = field(default_factory=list)
    unplanned_exits: list[tuple[int, str, int | None]] = field(default_factory=list)
    outages: list[tuple[int, int]] = field(default_factory=list)
    """(broker stopped, every partition deciding again), wall-clock ms."""
    resumes_s: list[float] = field(default_factory=list)
    """Per broker restart, from the broker being back until every partition decided again (inf: never)."""
    publish_window: tuple[int, int] = (0, 0)
    covered_at_ms: int | None = None
    settle_at_ms: int = 0
    not_whole: int = 0
    """Kills made before every worker was ready and every partition deciding again (it took longer
    than whole_deadline_s)."""
    settled: bool = True
    """Whether the group consumed every input to its end (and went quiet) before the deadline."""
    """When the workers were stopped to settle (progress is watched until then)."""


@dataclass
class ChaosRun:
    """One chaos run on the broker of `broker_settings` (started by the caller)."""

    plan: ChaosPlan
    broker_settings: broker.BrokerSettings
    workdir: Path
    prefix: str = field(default_factory=lambda: f"chaos{uuid.uuid4().hex[:8]}")
    workers: list[WorkerProcess] = field(default_factory=list)
    timeline: Timeline = field(default_factory=Timeline)
    accepted: set[tuple[str, str]] = field(default_factory=set)
    malformed: set[tuple[str, int, int]] = field(default_factory=set)
    _pending: list[tuple[Message, asyncio.Future[Any]]] = field(default_factory=list)
    _down: set[str] = field(default_factory=set)
    """Workers the controller killed and will restart itself."""
    _pause: asyncio.Event | None = None
    _paused: asyncio.Event = field(default_factory=asyncio.Event)
    _chaos_done: bool = False

    @property
    def bootstrap(self) -> str:
        return broker.bootstrap(self.broker_settings)

    def env(self, ticks: bool) -> dict[str, str]:
        return {
            **os.environ,
            "COPYBOT_BOOTSTRAP": self.bootstrap,
            "COPYBOT_TOPIC_PREFIX": self.prefix,
            "COPYBOT_APP_ID": self.prefix,
            "COPYBOT_PARTITIONS": str(self.plan.partitions),
            "COPYBOT_TICKS": "1" if ticks else "0",
        }

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env(self.plan.ticks))

    def make_workers(self) -> None:
        for n in range(self.plan.workers):
            name = f"w{n + 1}"
            env = {
                **self.env(self.plan.ticks),
                "COPYBOT_WORKER_DIR": str(self.workdir / f"worker-{name}"),
                "COPYBOT_WORKER_WEB_PORT": str(free_ports(1)[0]),
            }
            self.workers.append(WorkerProcess(name, env, self.workdir / f"worker-{name}.log"))

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()

    # --- publishing ---------------------------------------------------------------------------------

    async def send(self, client: CopybotClient, message: Message) -> None:
        if message.topic == CONFIG_CHANGES:
            future = await client.publish_raw(message.topic, message.value, key=message.key, partition=0)
        else:
            future = await client.publish_raw(message.topic, message.value, key=message.key)
        self._pending.append((message, future))

    async def flush(self, client: CopybotClient) -> None:
        """Wait for Kafka's acks; note each malformed message's (topic, partition, offset)."""
        await client.flush()
        for message, future in self._pending:
            meta = future.result()
            if message.malformed:
                self.malformed.add((meta.topic, meta.partition, meta.offset))
            if message.trade is not None:
                self.accepted.add(message.trade)
        self._pending.clear()

    async def publish_setup(self, client: CopybotClient, source: ChaosInput) -> None:
        """The setup config and first snapshots, then wait until their copies are in every partition."""
        changes = setup_changes(source.leaders)
        for change in changes:
            await self.send(
                client, Message(CONFIG_CHANGES, change["followedUserId"] or "GLOBAL", orjson.dumps(change))
            )
        await self.send(client, source.snapshot(now_ms(), whole=True))
        await self.flush(client)
        last = changes[-1]["changeId"].encode()

        def copied(values: list[Any]) -> bool:
            return {r.partition for r in values if last in r.value} == set(range(self.plan.partitions))

        await wait_for(
            lambda: copied_async(self.bootstrap, self.settings.topic(TRADES), copied), 120, "setup copies"
        )

    async def publisher(self, client: CopybotClient, source: ChaosInput) -> None:
        """Trades at a steady rate with wall-clock detect times; snapshots, config changes, bad input."""
        plan = self.plan
        steps = -(-plan.trades // source.trades_per_step)  # at least `trades` trades
        changes = timed_changes(source.leaders)
        started = time.monotonic()
        self.timeline.publish_window = (now_ms(), 0)
        step = 0
        while step < steps or not self._chaos_done:  # trades keep coming until the last kill is over
            step += 1
            if self._pause is not None and self._pause.is_set():
                paused_at = time.monotonic()
                await self.flush(client)
                self._paused.set()
                while self._pause.is_set():
                    await asyncio.sleep(0.05)  # paused by the controller (broker restart)
                self._paused.clear()
                started += time.monotonic() - paused_at  # resume the steady rate, no catch-up burst
            progress = min(1.0, step / steps)
            stamp = now_ms()
            for message in source.step(progress, stamp):
                await self.send(client, message)
            while changes and changes[0][0] <= progress:
                change = changes.pop(0)[1]
                await self.send(
                    client,
                    Message(CONFIG_CHANGES, change["followedUserId"] or "GLOBAL", orjson.dumps(change)),
                )
            if step % 50 == 0:
                await self.send(client, source.snapshot(stamp, whole=step % 250 == 0))
            if step % 100 == 0:
                await self.flush(client)
            delay = started + step * STEP_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the publisher, not waiting for anything
        await self.flush(client)
        self.timeline.publish_window = (self.timeline.publish_window[0], now_ms())
        say(f"published {len(self.accepted):,} trades, {len(self.malformed)} malformed messages")

    # --- chaos ----------------------------------------------------------------------------------------

    async def controller(self, rng: random.Random) -> None:
        """SIGKILL a random worker 1–4 s after every worker is up (restart after 0–5 s), `kills` times,
        and restart the broker once halfway. Kills wait for the group to be whole again, so what the run
        measures is one failover at a time, not a pile of them."""
        try:
            await self._kill_and_restart(rng)
        finally:
            self._chaos_done = True

    async def _kill_and_restart(self, rng: random.Random) -> None:
        plan = self.plan
        for n in range(plan.kills):
            await self.wait_whole()
            await asyncio.sleep(rng.uniform(1.0, 4.0))  # the chaos schedule
            if n == plan.kills // 2:
                await self.restart_broker()
                await self.wait_deciding()
            victim = rng.choice(self.workers)
            restart_in = rng.uniform(0, plan.max_restart_delay_s)
            self._down.add(victim.name)
            await asyncio.to_thread(victim.kill, signal.SIGKILL)
            self.timeline.kills.append((now_ms(), victim.name))
            say(f"SIGKILL {victim.name} ({n + 1}/{plan.kills}); restart in {restart_in:.1f}s")
            asyncio.get_running_loop().call_later(restart_in, self._restart, victim)

    async def wait_whole(self) -> None:
        """Wait until every worker is ready and then every partition decides — at most
        `whole_deadline_s` each (failover is due within that anyway); a worker that is not ready by
        then may be killed while it starts."""
        try:
            await wait_for(self.all_ready, self.plan.whole_deadline_s, "every worker to be ready")
        except TimeoutError:
            self.timeline.not_whole += 1
            return
        if not await self.every_partition_decides(self.plan.whole_deadline_s):
            self.timeline.not_whole += 1

    async def wait_deciding(self) -> None:
        """After the broker restart: wait until every partition has published an attempt again (a
        worker whose send was pending through the outage exits and is restarted first) and note when;
        the outage counts until then. So the next kill is not piled on the outage's aftermath."""
        began, back = self.timeline.outages[-1]
        if not await self.every_partition_decides(2 * self.plan.resume_limit_s):
            self.timeline.resumes_s.append(float("inf"))
            return
        self.timeline.outages[-1] = (began, now_ms())
        self.timeline.resumes_s.append((now_ms() - back) / 1000)
        say(f"every partition decides again {self.timeline.resumes_s[-1]:.1f}s after the broker is back")
        await self.wait_whole()

    async def every_partition_decides(self, timeout_s: float) -> bool:
        """Wait until every partition has published an attempt from now on (a worker that has just
        logged Ready may not have decided its new partitions yet: a kill then would pile a failover on
        the rebalance); False after `timeout_s`."""
        topic = self.settings.topic(COPY_ATTEMPTS)
        before = await end_offsets(self.bootstrap, topic)

        async def advanced() -> bool:
            now = await end_offsets(self.bootstrap, topic)
            return all(now[tp] > offset for tp, offset in before.items())

        try:
            await wait_for(advanced, timeout_s, "every partition to decide")
        except TimeoutError:
            return False
        return True

    def all_ready(self) -> bool:
        """Every worker is running (not waiting for its restart) and has logged that it is ready."""
        return all(
            w.name not in self._down
            and w.process is not None
            and w.process.poll() is None
            and READY_LINE in w.current_log()
            for w in self.workers
        )

    def _restart(self, worker: WorkerProcess) -> None:
        worker.start(wait_ready=False)
        self._down.discard(worker.name)

    async def restart_broker(self) -> None:
        assert self._pause is not None
        self._pause.set()
        await wait_for(self._paused.is_set, 60, "the publisher to pause (everything sent acknowledged)")
        began = now_ms()
        say("stopping the broker")
        with contextlib.redirect_stdout(sys.stderr):
            await asyncio.to_thread(broker.stop, self.broker_settings)
            await asyncio.to_thread(broker.start, self.broker_settings)
        self.timeline.outages.append((began, now_ms()))
        say(f"broker back after {(now_ms() - began) / 1000:.1f}s")
        self._pause.clear()

    async def supervisor(self) -> None:
        """Restart a worker that exited by itself (e.g. while the broker was down); note it."""
        last_start: dict[str, float] = {}
        while True:
            for worker in self.workers:
                process = worker.process
                if worker.name in self._down or process is None or process.poll() is None:
                    continue
                if time.monotonic() - last_start.get(worker.name, 0.0) < 2.0:
                    continue  # it failed at once (the broker is down): retry every 2 s
                last_start[worker.name] = time.monotonic()
                self.timeline.unplanned_exits.append((now_ms(), worker.name, process.returncode))
                say(f"{worker.name} exited by itself (code {process.returncode}); restarting it")
                worker.start(wait_ready=False)
            await asyncio.sleep(0.5)  # polling the processes

    # --- the end ----------------------------------------------------------------------------------------

    async def wait_covered(self, deadline_s: float) -> None:
        """Wait until the attempts cover every accepted trade (or the deadline: judged later)."""
        topic = self.settings.topic(COPY_ATTEMPTS)
        remaining = set(self.accepted)
        deadline = time.monotonic() + deadline_s
        async with tail(self.bootstrap, topic) as consumer:
            while remaining and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                    for r in records:
                        a = orjson.loads(r.value)
                        remaining -= {(a["followedUserId"], t) for t in a["tradeIds"]}
        if remaining:
            say(f"{len(remaining):,} accepted trades still without an attempt after {deadline_s:.0f}s")
        else:
            self.timeline.covered_at_ms = now_ms()
            say("every accepted trade is in an attempt")

    async def settle(self) -> None:
        """Restart the workers without ticks, then wait until the group has consumed every input
        partition to its end and copy-attempts has not grown for 5 s."""
        self.timeline.settle_at_ms = now_ms()
        for worker in self.workers:
            await asyncio.to_thread(worker.stop)
            worker.env = {**worker.env, "COPYBOT_TICKS": "0"}
        self._down = {w.name for w in self.workers}  # the supervisor leaves them alone from here
        for worker in self.workers:
            worker.start(wait_ready=False)
        settings = self.settings
        inputs = [settings.topic(t) for t in (TRADES, SNAPSHOTS, CONFIG_CHANGES)]
        quiet = QuietCheck(self.bootstrap, self.prefix, inputs, settings.topic(COPY_ATTEMPTS), 5.0)
        try:
            await wait_for(quiet.check, self.plan.settle_deadline_s, "the worker group to consume everything")
        except TimeoutError as exc:
            say(str(exc))
            self.timeline.settled = False

    async def read_back(self) -> ChaosRecords:
        settings = self.settings
        log_records = await asyncio.to_thread(read_to_end, self.bootstrap, settings.topic(TRADES), 120)
        log: dict[int, list[bytes]] = {}
        for r in sorted(log_records, key=lambda r: (r.partition, r.offset)):
            log.setdefault(r.partition, []).append(r.value)
        attempts = await asyncio.to_thread(read_to_end, self.bootstrap, settings.topic(COPY_ATTEMPTS), 120)
        letters = await asyncio.to_thread(read_to_end, self.bootstrap, settings.topic(DEAD_LETTERS), 120)
        start, publish_end = self.timeline.publish_window
        return ChaosRecords(
            log=log,
            attempts=[AttemptRecord(r.partition, r.offset, r.timestamp, r.value) for r in attempts],
            dead_letters=[orjson.loads(r.value) for r in letters],
            accepted=set(self.accepted),
            malformed=set(self.malformed),
            progress_window_ms=(start, publish_end, self.timeline.settle_at_ms),
            outages=list(self.timeline.outages),
        )

    async def run(self) -> ChaosVerdict:
        plan = self.plan
        self._pause, self._paused = asyncio.Event(), asyncio.Event()
        await create_topics(self.settings)
        self.make_workers()
        for worker in self.workers:
            worker.start(wait_ready=False)
        for worker in self.workers:
            await asyncio.to_thread(worker.wait_ready, 180.0)
        say(f"{len(self.workers)} workers ready ({self.prefix})")
        leaders = pick_leaders(plan.partitions, plan.leaders_per_partition)
        per_step = max(1, round(plan.trades_per_s * STEP_S))
        steps = -(-plan.trades // per_step)
        source = ChaosInput(plan.seed, leaders, per_step, min(1.0, plan.malformed / steps))
        supervisor = asyncio.create_task(self.supervisor())
        try:
            async with CopybotClient(self.settings, create_topics=False, client_id="chaos") as client:
                await self.publish_setup(client, source)
                say("config in force; publishing")
                await asyncio.gather(
                    self.publisher(client, source), self.controller(random.Random(plan.seed))
                )
            await self.wait_covered(plan.cover_deadline_s)
        finally:
            supervisor.cancel()
        await self.settle()
        say("settled; reading everything back")
        verdict = judge(await self.read_back(), plan.partitions, plan.gap_limit_s)
        verdict.kills, verdict.broker_restarts = len(self.timeline.kills), len(self.timeline.outages)
        verdict.resume_s = max(self.timeline.resumes_s, default=0.0)
        verdict.resume_limit_s = plan.resume_limit_s
        verdict.settled = self.timeline.settled
        verdict.notes += self.notes()
        return verdict

    def notes(self) -> list[str]:
        t = self.timeline
        kills = ", ".join(f"{name}@{(at - t.publish_window[0]) / 1000:.0f}s" for at, name in t.kills)
        outages = ", ".join(
            f"{(b - a) / 1000:.1f}s at {(a - t.publish_window[0]) / 1000:.0f}s" for a, b in t.outages
        )
        return [
            f"seed {self.plan.seed}; {len(t.kills)} SIGKILLs ({kills}); broker outage until every partition "
            f"decided again {outages}; "
            f"unplanned worker exits {len(t.unplanned_exits)}; kills before the group was whole again "
            f"{t.not_whole}",
            f"worker logs: {self.workdir}",
        ]


@contextlib.asynccontextmanager
async def tail(bootstrap: str, topic: str) -> Any:
    """A consumer (no group) assigned to every partition of `topic`, from the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await wait_value(lambda: partitions_of(consumer, topic), 60, f"{topic}'s partitions")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """Every partition's end offset of `topic`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await wait_value(lambda: partitions_of(consumer, topic), 60, f"{topic}'s partitions")
        ends: dict[TopicPartition, int] = await consumer.end_offsets(
            [TopicPartition(topic, p) for p in sorted(partitions)]
        )
        return ends
    finally:
        await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> set[int] | None:
    found = consumer.partitions_for_topic(topic)
    if not found:
        await consumer._client.force_metadata_update()
    return found or None


async def copied_async(bootstrap: str, topic: str, condition: Callable[[list[Any]], bool]) -> bool:
    records = await asyncio.to_thread(read_to_end, bootstrap, topic, 60)
    return condition(records)


async def wait_for(condition: Callable[[], bool | Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Wait until `condition()` (a bool, or an awaitable of one) holds; TimeoutError naming `what`."""
    await wait_value(lambda: _true_or_none(condition), timeout_s, what)


async def _true_or_none(condition: Callable[[], bool | Awaitable[bool]]) -> bool | None:
    value = condition()
    if not isinstance(value, bool):
        value = await value
    return True if value else None


async def wait_value(probe: Callable[[], Awaitable[Any]], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.25)  # polling interval of a condition wait


@dataclass
class QuietCheck:
    """True once the group's committed offsets equal the end offsets of every input topic and the
    output topic has not grown for `quiet_s` (both observed continuously)."""

    bootstrap: str
    group: str
    inputs: list[str]
    output: str
    quiet_s: float
    _since: float | None = None
    _output_end: int = -1

    async def check(self) -> bool:
        caught_up, output_end = await group_position(self.bootstrap, self.group, self.inputs, self.output)
        if not caught_up or output_end != self._output_end:
            self._since, self._output_end = None, output_end
            return False
        if self._since is None:
            self._since = time.monotonic()
        return time.monotonic() - self._since >= self.quiet_s


async def group_position(bootstrap: str, group: str, inputs: list[str], output: str) -> tuple[bool, int]:
    """(the group has committed every input partition up to its end, the output's total end offset)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        topics = await consumer.topics()
        tps = [
            TopicPartition(t, p)
            for t in [*inputs, output]
            if t in topics
            for p in sorted(consumer.partitions_for_topic(t) or [])
        ]
        ends = await consumer.end_offsets(tps)
        caught_up = all(
            ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp])
            for tp in tps
            if tp.topic != output
        )
        return caught_up, sum(ends[tp] for tp in tps if tp.topic == output)
    finally:
        await consumer.stop()
        await admin.close()


def run_chaos(plan: ChaosPlan, broker_settings: broker.BrokerSettings, workdir: Path) -> ChaosVerdict:
    """Run one chaos run on a started broker; the workers are stopped at the end, also on errors."""
    run = ChaosRun(plan, broker_settings, workdir)
    try:
        return asyncio.run(run.run())
    finally:
        run.close()
        for worker in run.workers:
            if READY_LINE not in worker.log_text():
                say(f"{worker.name} never got ready:\n{worker.log_text()[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = ChaosPlan()
    for name in ("seed", "trades", "kills", "trades_per_s", "malformed", "partitions", "workers"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument(
        "--no-ticks", action="store_true", help="COPYBOT_TICKS=0 (trades keep wall-clock times)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (worker logs)")
    args = parser.parse_args()
    quiet_kafka_logs()
    plan = ChaosPlan(
        seed=args.seed,
        trades=args.trades,
        kills=args.kills,
        trades_per_s=args.trades_per_s,
        malformed=args.malformed,
        partitions=args.partitions,
        workers=args.workers,
        ticks=not args.no_ticks,
    )
    workdir = Path(tempfile.mkdtemp(prefix="copybot-chaos-"))
    settings = broker.on_free_ports(workdir / "kafka")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            broker.start(settings)
        verdict = run_chaos(plan, settings, workdir)
    finally:
        with contextlib.redirect_stdout(sys.stderr):
            broker.stop(settings)
    print(render(verdict))
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
