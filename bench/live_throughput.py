"""The live worker against what the same work costs without Faust, on one broker, in one run.

    .venv/bin/python bench/live_throughput.py [--trades 50000] [--rounds 2] [--partitions 8]
    .venv/bin/python bench/live_throughput.py --latency [--seconds 30] [--rate 1000]
    .venv/bin/python bench/live_throughput.py --memory [--trades 1000000] [--dedup-window-ms N]

It starts its own embedded broker (free ports, a temporary data dir; stopped at the end, also on errors).

**Throughput** (default): the sample tape (``--trades``) is split into its *prefix* — every config change and
snapshot, in tape order — and its *body* — the trades and ticks, then a final tick a day past the end (so
every window and buffer closes). Rounds of three runs, interleaved (B0, B1, W, B0, B1, W, …):

- **B0**, a batched aiokafka passthrough: the decision log the worker reads (prefix copies, then the body,
  routed into partitions as the worker sees them) is pre-filled once into a topic; a consumer ``getmany``-s
  up to 10,000 records, appends each partition's records to one producer batch for the same partition of an
  output topic (``create_batch`` / ``send_batch``, linger 0, acks=all), waits for the batches and commits,
  per fetched batch.
- **B1**, B0 plus the decisions: each record is also decoded (:func:`streams.serde.decode_event`), run
  through :func:`models.engine.process` (one state per partition) and its attempts appended to one batch
  per partition of an attempts topic — the worker's work without Faust (the passthrough stands in for the
  worker's state changelog).
- **W**, the worker subprocess (``COPYBOT_TICKS=0``): on a fresh prefix, the worker is started, the prefix
  is published and waited for (its copies in leader-trades and the group committed to their end: the tape's
  config is in force), the worker is stopped, the body is published, and the worker started again; timed
  from its "assigned decision partitions" log line (the time in that line) until the attempts topic holds
  as many attempts as the decision core makes of the log (its end offsets, polled every 20 ms: a consumer
  decoding every attempt would take CPU from the worker). Then, untimed, the attempts are read back: they
  must cover every accepted trade with no attempt twice, else the row says so. (Faust's "Ready" line is
  no start: it came before the assignment in some runs and 0.7 s into the backlog in others.) Events =
  the records the body added to leader-trades (from the end offsets).

Diagnostics for a W run (environment): ``BENCH_THREADS=1`` prints the broker's CPU per thread over the
timed window (``/proc/<pid>/task``) and the worker's garbage-collector pauses; ``BENCH_PYSPY=/tmp/spy``
records the worker with ``py-spy`` (not a dependency: ``pip install py-spy``) into ``/tmp/spy.<pid>``
(raw collapsed stacks); it slows the worker; ``BENCH_KEEP_LOGS=/tmp/wlog`` keeps each W worker's log as
``/tmp/wlog.<pid>``.

CPU µs per event come from ``/proc/<pid>/stat`` (utime + stime) over the timed window: the worker's (for
B0/B1: this process's) and the broker's. Ratios compare W with the B0 and B1 runs of the same round.

**Latency** (``--latency``): a worker with wall-clock ticks, ``aggregationWindowMs`` 0 published first;
then trades offered at ``--rate`` per second with wall-clock detect times for ``--seconds``; each trade's
latency is from just before it is handed to the producer until a consumer in this process sees its
attempt. Reports p50 / p99 / max.

**Memory** (``--memory``): a backlog of ``--trades`` (default 1M, ~34 h of leader time) sample-tape trades,
the worker started on it, its RSS (``/proc/<pid>/status`` VmRSS) sampled every second. Warm-up lasts until
the trades of the first dedup horizon (the tape's ``dedupWindowMs``, 24 h by default; ``--dedup-window-ms``
sets another) plus 5 minutes are decided, and at least 20 % of the trades: until then remembered trade ids
and group keys legitimately accumulate (SPEC: they expire after the horizon) and buffers fill. Reports
min / max of the samples after warm-up and the spread as ± % around their midpoint, and RSS through the
whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import datetime
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams import native  # noqa: E402

if native.stale_message() is not None:  # measure the sources on disk, never an older build
    raise SystemExit(f"{Path(__file__).name}: {native.stale_message()}")

from models.config import ConfigStore, apply_change  # noqa: E402
from models.engine import InputEvent, process  # noqa: E402
from models.events import ConfigChange, LeaderTrade  # noqa: E402
from models.state import PartitionState  # noqa: E402
from streams.devbroker import broker  # noqa: E402
from streams.devbroker.broker import free_ports  # noqa: E402
from streams.kafka.admin import create_topics  # noqa: E402
from streams.kafka.client import CopybotClient, quiet_kafka_logs  # noqa: E402
from streams.sample_tape import generate  # noqa: E402
from streams.serde import DecodeError, decode_event  # noqa: E402
from streams.settings import CONFIG_CHANGES, COPY_ATTEMPTS, SNAPSHOTS, TRADES, Settings  # noqa: E402
from streams.topology import log_partitions, route  # noqa: E402
from streams.worker.app import ASSIGNED_LINE  # noqa: E402

READY_LINE = "[^Worker]: Ready"
FETCH = 10_000
"""Records per ``getmany`` in B0 / B1."""
FINAL_TICK_AFTER_MS = 86_400_000
POLL_S = 0.02
STALL_S = 30.0
"""W gives up waiting when no attempt has come for this long (a worker that lost trades): noted in the row."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (e.g. from ``timeout``) unwinds like an error, so the workers and the broker are stopped
    by the ``finally`` blocks; without it a killed run left its embedded broker running."""
    raise SystemExit(128 + signum)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    return _stat_cpu_s(Path(f"/proc/{pid}/stat"))


def _stat_cpu_s(stat: Path) -> float:
    """CPU seconds (user + system) in a ``/proc/…/stat`` file (a process's or a thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of a process (threads of one name summed)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            cpu = _stat_cpu_s(task / "stat")
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + cpu
    return out


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- the tape ----------------------------------------------------------------------------------------


@dataclass
class Tape:
    prefix: list[tuple[InputEvent, bytes]]
    """Config changes and snapshots, in tape order: published first, so the tape's config is in force."""
    body: list[tuple[InputEvent, bytes]]
    """Trades and ticks, in tape order, then the final tick."""
    accepted: set[tuple[str, str]]
    log: list[tuple[int, bytes | None, bytes]] = field(default_factory=list)
    """(partition, key, value) of the decision log the worker reads: prefix copies, then the body."""
    prefix_records: int = 0


def load_tape(trades: int, seed: int, partitions: int) -> Tape:
    tape = Tape([], [], set())
    last_ms = 0
    for raw in generate(trades=trades, seed=seed):
        try:
            event = decode_event(raw)
        except DecodeError:
            continue
        if event.kind in ("configChange", "portfolioSnapshot"):
            tape.prefix.append((event, raw))
            continue
        tape.body.append((event, raw))
        if isinstance(event, LeaderTrade):
            tape.accepted.add((event.followed_user_id, event.trade_id))
            last_ms = max(last_ms, event.detect_time_ms)
        elif event.kind == "tick":
            last_ms = max(last_ms, event.now_ms)
    final = orjson.dumps({"kind": "tick", "nowMs": last_ms + FINAL_TICK_AFTER_MS})
    tape.body.append((decode_event(final), final))
    for part in (tape.prefix, tape.body):
        for event, raw in part:
            key = route(event)[1]
            for p in log_partitions(event, partitions):
                tape.log.append((p, None if key is None else key.encode(), raw))
        if part is tape.prefix:
            tape.prefix_records = len(tape.log)
    return tape


# --- B0 / B1: aiokafka without Faust -----------------------------------------------------------------


async def create_plain_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=n, num_partitions=partitions, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


def producer(bootstrap: str) -> Any:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, max_batch_size=1_000_000)


async def send_batches(
    prod: Any, topic: str, partition: int, messages: Iterable[tuple[bytes | None, bytes]]
) -> list[Any]:
    """One producer batch per partition (a new one only when it is full); returns their futures."""
    futures, batch = [], prod.create_batch()
    for key, value in messages:
        if batch.append(key=key, value=value, timestamp=None) is None:
            futures.append(await prod.send_batch(batch, topic, partition=partition))
            batch = prod.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    if batch.record_count():
        futures.append(await prod.send_batch(batch, topic, partition=partition))
    return futures


async def prefill(
    bootstrap: str, topic: str, log: list[tuple[int, bytes | None, bytes]], partitions: int
) -> None:
    prod = producer(bootstrap)
    await prod.start()
    try:
        for start in range(0, len(log), 50_000):
            chunk = log[start : start + 50_000]
            futures = []
            for p in range(partitions):
                futures += await send_batches(prod, topic, p, [(k, v) for q, k, v in chunk if q == p])
            await asyncio.gather(*futures)
    finally:
        await prod.stop()


@dataclass
class Timed:
    seconds: float
    events: int
    client_cpu_s: float
    broker_cpu_s: float
    note: str = ""


async def passthrough(
    bootstrap: str, src: str, dst: str, attempts: str | None, partitions: int, total: int, broker_pid: int
) -> Timed:
    """B0 (`attempts` None) or B1: consume `total` records of `src`, pass them to `dst` in one batch per
    partition (B1: and decide them, attempts to `attempts`), commit per fetched batch."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1_048_576,
    )
    prod = producer(bootstrap)
    await consumer.start()
    await prod.start()
    try:
        tps = [TopicPartition(src, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        await consumer.commit({tp: await consumer.position(tp) for tp in tps})  # find the coordinator
        states = [PartitionState() for _ in range(partitions)]
        seen, made = 0, 0
        cpu0, broker0, started = time.process_time(), cpu_s(broker_pid), time.perf_counter()
        while seen < total:
            fetched = await consumer.getmany(timeout_ms=500, max_records=FETCH)
            futures = []
            for tp, records in fetched.items():
                futures += await send_batches(prod, dst, tp.partition, [(r.key, r.value) for r in records])
                if attempts is not None:
                    out = decide(states[tp.partition], records)
                    made += len(out)
                    futures += await send_batches(prod, attempts, tp.partition, out)
                seen += len(records)
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
        seconds = time.perf_counter() - started
        return Timed(
            seconds, seen, time.process_time() - cpu0, cpu_s(broker_pid) - broker0, f"{made:,} attempts"
        )
    finally:
        await prod.stop()
        await consumer.stop()


def replay_attempts(log: list[tuple[int, bytes | None, bytes]], partitions: int) -> int:
    """How many attempts the decision core makes of the log (each partition replayed alone)."""
    states = [PartitionState() for _ in range(partitions)]
    return sum(len(decide(states[p], [_Value(v)])) for p, _, v in log)


@dataclass(frozen=True)
class _Value:
    value: bytes


def decide(state: PartitionState, records: Iterable[Any]) -> list[tuple[bytes | None, bytes]]:
    """The worker's per-record work: decode, the decision core, the attempts' wire bytes (key = leader)."""
    out: list[tuple[bytes | None, bytes]] = []
    for record in records:
        try:
            event = decode_event(record.value)
        except DecodeError:
            continue
        for output in process(state, event):
            if isinstance(output, dict):  # a copy attempt (the other outputs are models)
                out.append((output["followedUserId"].encode(), orjson.dumps(output)))
    return out


# --- W: the worker -------------------------------------------------------------------------------------


class Worker:
    """A ``copybot worker`` subprocess in its own session, logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            start = log.tell()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._read = start

    def saw(self, text: str) -> bool:
        with self.log_path.open("rb") as log:
            log.seek(self._read)
            return text.encode() in log.read()

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"the worker exited ({self.process.returncode}):\n{tail}")

    async def ready(self, timeout_s: float, line: str = READY_LINE) -> float:
        """When this run logged `line` (Faust's "Ready" by default): polled every POLL_S."""
        deadline = time.monotonic() + timeout_s
        while not self.saw(line):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not log {line!r} within {timeout_s:.0f}s")
            await asyncio.sleep(POLL_S)  # polling the log for a condition, with a deadline
        return time.perf_counter()

    def logged_at(self, text: str) -> float:
        """The epoch time of this run's first log line containing `text` (its ``[date time,ms]`` prefix)."""
        with self.log_path.open("rb") as log:
            log.seek(self._read)
            for line in log.read().decode(errors="replace").splitlines():
                if text in line and line.startswith("["):
                    stamp = line[1 : line.index("]")]
                    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        raise RuntimeError(f"the worker's log has no line with {text!r}")

    def stop(self, timeout_s: float = 60.0) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            say(f"worker did not stop within {timeout_s:.0f}s of SIGTERM: SIGKILL")
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout_s)


def worker_env(bootstrap: str, prefix: str, partitions: int, workdir: Path, ticks: bool) -> dict[str, str]:
    return {
        **os.environ,
        "COPYBOT_BOOTSTRAP": bootstrap,
        "COPYBOT_TOPIC_PREFIX": prefix,
        "COPYBOT_APP_ID": prefix,
        "COPYBOT_PARTITIONS": str(partitions),
        "COPYBOT_TICKS": "1" if ticks else "0",
        "COPYBOT_WORKER_DIR": str(workdir / f"worker-{prefix}"),
        "COPYBOT_WORKER_WEB_PORT": str(free_ports(1)[0]),
    }


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def committed_to_end(bootstrap: str, group: str, topics: dict[str, int]) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    for topic, partitions in topics.items():
        for p, end in (await end_offsets(bootstrap, topic, partitions)).items():
            done = committed.get(TopicPartition(topic, p))
            if end and (done is None or done.offset < end):
                return False
    return True


async def wait_condition(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)  # polling a condition with a deadline


async def publish_events(settings: Settings, events: Iterable[tuple[InputEvent, bytes]]) -> None:
    async with CopybotClient(
        settings, create_topics=False, client_id="bench-publish", linger_ms=20
    ) as client:
        for event, raw in events:
            await client.publish_decoded(event, raw)
        await client.flush()


async def config_in_force(settings: Settings, tape: Tape, workdir: Path, timeout_s: float) -> None:
    """Worker up, the tape's prefix published, its copies in the log and consumed; worker stopped."""
    n, bootstrap = settings.partitions, settings.bootstrap
    env = worker_env(bootstrap, settings.topic_prefix, n, workdir, ticks=False)
    worker = Worker(env, workdir / f"{settings.topic_prefix}.log")
    try:
        await worker.ready(timeout_s)
        await publish_events(settings, tape.prefix)

        async def copied() -> bool:
            worker.check_alive()  # a worker that exited (say, exit 70 on a failed send) is reported
            total = sum((await end_offsets(bootstrap, settings.topic(TRADES), n)).values())
            inputs = {
                settings.topic(SNAPSHOTS): n,
                settings.topic(CONFIG_CHANGES): 1,
                settings.topic(TRADES): n,
            }
            return total >= tape.prefix_records and await committed_to_end(bootstrap, settings.app_id, inputs)

        await wait_condition(copied, timeout_s, "the prefix's copies in leader-trades, consumed")
    finally:
        worker.stop()


async def worker_round(
    settings: Settings, tape: Tape, expected: int, workdir: Path, broker_pid: int, timeout_s: float
) -> Timed:
    """W: the tape's config in force, the body as a backlog, then timed from the worker's assignment
    to its `expected`-th attempt; then (untimed) the attempts must cover every trade, each once."""
    await create_topics(settings)
    await config_in_force(settings, tape, workdir, timeout_s)
    n, bootstrap = settings.partitions, settings.bootstrap
    before = sum((await end_offsets(bootstrap, settings.topic(TRADES), n)).values())
    await publish_events(settings, tape.body)
    events = sum((await end_offsets(bootstrap, settings.topic(TRADES), n)).values()) - before
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    env = worker_env(bootstrap, settings.topic_prefix, n, workdir, ticks=False)
    worker = Worker(env, workdir / f"{settings.topic_prefix}.log")
    try:
        tps = [TopicPartition(settings.topic(COPY_ATTEMPTS), p) for p in range(n)]
        consumer.assign(tps)
        base = await consumer.end_offsets(tps)
        await worker.ready(timeout_s, ASSIGNED_LINE)
        cpu0, broker0 = cpu_s(worker.process.pid), cpu_s(broker_pid)
        started = worker.logged_at(ASSIGNED_LINE)  # the timed window opens at the assignment
        threads0 = thread_cpu(broker_pid)
        spy = None
        if os.environ.get("BENCH_PYSPY"):
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(worker.process.pid),
                    "--nonblocking",
                    "-r",
                    "250",
                    "--format",
                    "raw",
                    "-o",
                    os.environ["BENCH_PYSPY"] + f".{worker.process.pid}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        # Timed: the attempts' count, from the end offsets (a request every POLL_S, not a consumer
        # decoding ~1 KB per attempt, which took ~0.3 s of CPU in the window on this 2-core machine).
        made, first = 0, None
        deadline, last, last_made = time.monotonic() + timeout_s, time.time(), 0
        while made < expected and time.time() - last < STALL_S:
            worker.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{expected - made:,} of {expected:,} attempts missing after {timeout_s:.0f}s"
                )
            ends = await consumer.end_offsets(tps)
            made = sum(ends[tp] - base[tp] for tp in tps)
            if made > last_made:
                first, last, last_made = first or time.time(), time.time(), made
            if made < expected:
                await asyncio.sleep(POLL_S)  # polling a condition, with a deadline
        seconds = last - started  # until the last attempt came (when some never come: see the note)
        cpu, broker_cpu = cpu_s(worker.process.pid) - cpu0, cpu_s(broker_pid) - broker0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait()
        if os.environ.get("BENCH_THREADS"):
            threads1 = thread_cpu(broker_pid)
            top = sorted(((threads1[k] - threads0.get(k, 0.0), k) for k in threads1), reverse=True)[:12]
            say("broker threads: " + ", ".join(f"{k} {v:.2f}s" for v, k in top))
        # Untimed: read the attempts back; they must cover every accepted trade, each attempt once.
        for tp in tps:
            consumer.seek(tp, base[tp])
        remaining, ids, read = set(tape.accepted), set(), 0
        while read < made:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read back {read:,} of {made:,} attempts within {timeout_s:.0f}s")
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for r in records:
                    a = orjson.loads(r.value)
                    ids.add(a["attemptId"])
                    remaining -= {(a["followedUserId"], t) for t in a["tradeIds"]}
                read += len(records)
        note = f"first attempt {(first or started) - started:.1f}s after the assignment"
        if remaining:
            note += f"; {len(remaining):,} TRADES NEVER DECIDED (no attempt for {STALL_S:.0f}s)"
        if len(ids) != made or made != expected:
            note += f"; {made:,} ATTEMPTS, {len(ids):,} DISTINCT, {expected:,} EXPECTED"
        return Timed(seconds, events, cpu, broker_cpu, note)
    finally:
        worker.stop()
        await consumer.stop()
        if os.environ.get("BENCH_KEEP_LOGS"):
            shutil.copy(worker.log_path, f"{os.environ['BENCH_KEEP_LOGS']}.{worker.process.pid}")
        if os.environ.get("BENCH_THREADS"):
            say("worker: " + worker.log_path.read_text(errors="replace").rsplit("stopping: ", 1)[-1][:200])


# --- throughput: the table ------------------------------------------------------------------------------


def row(name: str, t: Timed, trades: int) -> str:
    return (
        f"{name:<4} {t.events / t.seconds:>10,.0f} {trades / t.seconds:>10,.0f} {t.seconds:>8.2f} "
        f"{t.client_cpu_s * 1e6 / t.events:>10.1f} {t.broker_cpu_s * 1e6 / t.events:>10.1f}  {t.note}"
    )


HEADER = f"{'run':<4} {'events/s':>10} {'trades/s':>10} {'seconds':>8} {'µs/ev cli':>10} {'µs/ev brk':>10}"


def throughput(args: argparse.Namespace, bootstrap: str, broker_pid: int, tmp: Path) -> str:
    tape = load_tape(args.trades, args.seed, args.partitions)
    trades, n = len(tape.accepted), args.partitions
    say(
        f"tape: {trades:,} accepted trades, {len(tape.prefix):,} config/snapshot lines, "
        f"{len(tape.log):,} log records"
    )
    run_id = uuid.uuid4().hex[:8]
    src, dst, out = (f"bench{run_id}.{name}" for name in ("log", "copy", "attempts"))
    asyncio.run(create_plain_topics(bootstrap, [src, dst, out], n))
    asyncio.run(prefill(bootstrap, src, tape.log, n))
    total = len(tape.log)
    asyncio.run(passthrough(bootstrap, src, dst, None, n, total, broker_pid))  # warm-up, untimed
    expected = replay_attempts(tape.log, n)
    results: dict[str, list[Timed]] = {"B0": [], "B1": [], "W": []}
    lines = [HEADER]
    for r in range(args.rounds):
        results["B0"].append(asyncio.run(passthrough(bootstrap, src, dst, None, n, total, broker_pid)))
        results["B1"].append(asyncio.run(passthrough(bootstrap, src, dst, out, n, total, broker_pid)))
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        settings = Settings.from_env(
            {
                "COPYBOT_BOOTSTRAP": bootstrap,
                "COPYBOT_TOPIC_PREFIX": prefix,
                "COPYBOT_APP_ID": prefix,
                "COPYBOT_PARTITIONS": str(n),
            }
        )
        results["W"].append(
            asyncio.run(worker_round(settings, tape, expected, tmp, broker_pid, args.timeout))
        )
        for name in ("B0", "B1", "W"):
            lines.append(row(name, results[name][-1], trades))
            say(f"round {r + 1}: {lines[-1]}")
    w_b0 = [
        w.events / w.seconds / (b.events / b.seconds)
        for w, b in zip(results["W"], results["B0"], strict=True)
    ]
    w_b1 = [
        w.events / w.seconds / (b.events / b.seconds)
        for w, b in zip(results["W"], results["B1"], strict=True)
    ]
    lines.append(
        f"W/B0 events/s {statistics.median(w_b0):.3f}, W/B1 events/s {statistics.median(w_b1):.3f} "
        f"(median of {args.rounds} rounds; {trades:,} trades, {total:,} log records, {n} partitions; "
        "cli = the worker for W, this process for B0/B1; brk = the broker)"
    )
    return "\n".join(lines)


# --- latency ---------------------------------------------------------------------------------------------


async def latency_run(args: argparse.Namespace, bootstrap: str, tmp: Path) -> str:
    prefix = f"lat{uuid.uuid4().hex[:8]}"
    n = args.partitions
    settings = Settings.from_env(
        {
            "COPYBOT_BOOTSTRAP": bootstrap,
            "COPYBOT_TOPIC_PREFIX": prefix,
            "COPYBOT_APP_ID": prefix,
            "COPYBOT_PARTITIONS": str(n),
        }
    )
    await create_topics(settings)
    worker = Worker(worker_env(bootstrap, prefix, n, tmp, ticks=True), tmp / f"{prefix}.log")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await worker.ready(args.timeout)
        window_zero = {
            "kind": "configChange",
            "changeId": "latency-w0",
            "scope": "GLOBAL",
            "followedUserId": None,
            "changedAtMs": 0,
            "system": {"aggregationWindowMs": 0},
        }
        async with CopybotClient(settings, create_topics=False, linger_ms=0) as client:
            await client.publish(window_zero)
            await client.flush()

            async def copied() -> bool:
                inputs = {settings.topic(CONFIG_CHANGES): 1}
                return await committed_to_end(bootstrap, prefix, inputs)

            await wait_condition(copied, args.timeout, "the window-0 config to be forwarded")
            tps = [TopicPartition(settings.topic(COPY_ATTEMPTS), p) for p in range(n)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            sent: dict[str, tuple[float, float]] = {}
            latencies: list[float] = []
            produced: list[float] = []
            reader = asyncio.create_task(read_latencies(consumer, sent, latencies, produced))
            await offer(client, sent, args.rate, args.seconds)
            deadline = time.monotonic() + args.timeout
            while len(latencies) < len(sent) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # waiting for the last attempts, with a deadline
            reader.cancel()
    finally:
        worker.stop()
        await consumer.stop()
    latencies.sort()
    produced.sort()
    missing = len(sent) - len(latencies)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    return (
        f"latency, {len(sent):,} trades offered at {args.rate:,}/s over {args.seconds}s "
        f"(window 0, wall-clock ticks, {n} partitions): p50 {pct(latencies, 0.5):.1f} ms, "
        f"p99 {pct(latencies, 0.99):.1f} ms, max {latencies[-1] * 1000:.1f} ms; of which until the "
        f"worker produced the attempt (its record timestamp): p50 {pct(produced, 0.5):.1f} ms, "
        f"p99 {pct(produced, 0.99):.1f} ms, max {produced[-1] * 1000:.1f} ms"
        + (f"; {missing} trades never seen" if missing else "")
    )


async def offer(client: CopybotClient, sent: dict[str, tuple[float, float]], rate: int, seconds: int) -> None:
    """Trades at `rate` per second (in 10 ms steps), detect time = now, for `seconds`."""
    leaders = [f"lat-{i}" for i in range(16)]
    per_step = max(1, rate // 100)
    began = time.monotonic()
    for step in range(seconds * 100):
        now = int(time.time() * 1000)
        for i in range(per_step):
            trade_id = f"t{step}-{i}"
            leader = leaders[(step * per_step + i) % len(leaders)]
            raw = orjson.dumps(
                {
                    "kind": "leaderTrade",
                    "tradeId": trade_id,
                    "followedUserId": leader,
                    "assetId": "a",
                    "marketId": None,
                    "side": "BUY",
                    "priceMicros": 500_000,
                    "shareMicros": 20_000_000,
                    "notionalMicros": 10_000_000,
                    "detectTimeMs": now,
                }
            )
            sent[trade_id] = (time.perf_counter(), time.time())
            await client.publish(raw)
        delay = began + (step + 1) * 0.01 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the offered load
    await client.flush()


async def read_latencies(
    consumer: Any, sent: dict[str, tuple[float, float]], latencies: list[float], produced: list[float]
) -> None:
    """Each attempted trade's latency until this consumer saw its attempt, and until the worker
    produced it (the attempt record's CreateTime, set by the worker's producer when it batched it)."""
    while True:
        for records in (await consumer.getmany(timeout_ms=50, max_records=10_000)).values():
            now = time.perf_counter()
            for r in records:
                for trade_id in orjson.loads(r.value)["tradeIds"]:
                    if trade_id in sent:
                        at, wall = sent[trade_id]
                        latencies.append(now - at)
                        produced.append(r.timestamp / 1000 - wall)


# --- memory ----------------------------------------------------------------------------------------------


MEMORY_MARGIN_MS = 5 * 60_000
"""Leader time past the dedup horizon before RSS is sampled: the expired minute buckets are dropped and
every new trade id then replaces a forgotten one."""


def dedup_horizon_ms(tape: Tape) -> int:
    """The GLOBAL dedup window in force once the tape's config changes are applied."""
    store = ConfigStore()
    for event, _ in tape.prefix:
        if isinstance(event, ConfigChange):
            store = apply_change(store, event).store or store
    return store.global_effective.dedup_window_ms


def with_dedup_window(tape: Tape, window_ms: int, partitions: int) -> None:
    """Put a GLOBAL change of the dedup window at the end of the tape's prefix (and its log copies)."""
    raw = orjson.dumps(
        {
            "kind": "configChange",
            "changeId": f"bench-dedup-{window_ms}",
            "scope": "GLOBAL",
            "followedUserId": None,
            "changedAtMs": 0,
            "system": {"dedupWindowMs": window_ms},
        }
    )
    tape.prefix.append((decode_event(raw), raw))
    copies = [(p, b"GLOBAL", raw) for p in range(partitions)]
    tape.log[tape.prefix_records : tape.prefix_records] = copies
    tape.prefix_records += len(copies)


def warm_up_trades(tape: Tape, horizon_ms: int) -> tuple[int, float]:
    """(trades decided before the leader clock is past the dedup horizon (+ margin), and at least the
    first 20 % (the worker's buffers and the allocator settle), the tape's leader time in hours): until
    then the dedup memory grows by design (SPEC: remembered ids expire)."""
    times = sorted(e.detect_time_ms for e, _ in tape.body if isinstance(e, LeaderTrade))
    past_horizon = bisect.bisect_left(times, times[0] + horizon_ms + MEMORY_MARGIN_MS)
    return max(past_horizon, len(times) // 5), (times[-1] - times[0]) / 3.6e6


async def sample_rss(worker: Worker, consumer: Any, tape: Tape, timeout_s: float) -> list[tuple[int, int]]:
    """(trades covered, worker RSS) once a second until every trade is in an attempt (or none comes)."""
    remaining = set(tape.accepted)
    samples: list[tuple[int, int]] = []
    next_sample, deadline, last = time.monotonic(), time.monotonic() + timeout_s, time.monotonic()
    while remaining and time.monotonic() - last < STALL_S:
        worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(remaining):,} trades without an attempt after {timeout_s:.0f}s")
        for records in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
            last = time.monotonic()
            for r in records:
                a = orjson.loads(r.value)
                remaining -= {(a["followedUserId"], t) for t in a["tradeIds"]}
        if time.monotonic() >= next_sample:
            samples.append((len(tape.accepted) - len(remaining), rss_bytes(worker.process.pid)))
            next_sample += 1.0
    if remaining:
        say(f"{len(remaining):,} TRADES NEVER DECIDED")
    return samples


async def memory_run(args: argparse.Namespace, bootstrap: str, tmp: Path) -> str:
    n = args.partitions
    prefix = f"mem{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env(
        {"COPYBOT_BOOTSTRAP": bootstrap, "COPYBOT_TOPIC_PREFIX": prefix, "COPYBOT_APP_ID": prefix}
        | {"COPYBOT_PARTITIONS": str(n)}
    )
    tape = load_tape(args.trades, args.seed, n)
    if args.dedup_window_ms is not None:
        with_dedup_window(tape, args.dedup_window_ms, n)
    horizon = dedup_horizon_ms(tape)
    warm_up, hours = warm_up_trades(tape, horizon)
    say(
        f"tape: {len(tape.accepted):,} trades over {hours:.1f} h of leader time; dedup horizon "
        f"{horizon / 3.6e6:.1f} h: warm-up until {warm_up:,} trades are decided"
    )
    await create_topics(settings)
    await config_in_force(settings, tape, tmp, args.timeout)
    await publish_events(settings, tape.body)
    say(f"published {len(tape.accepted):,} trades")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    worker = Worker(worker_env(bootstrap, prefix, n, tmp, ticks=False), tmp / f"{prefix}.log")
    try:
        tps = [TopicPartition(settings.topic(COPY_ATTEMPTS), p) for p in range(n)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        await worker.ready(args.timeout)
        samples = await sample_rss(worker, consumer, tape, args.timeout)
    finally:
        worker.stop()
        await consumer.stop()
    return memory_summary(samples, warm_up, len(tape.accepted), hours, horizon)


def memory_summary(
    samples: list[tuple[int, int]], warm_up: int, trades: int, hours: float, horizon: int
) -> str:
    mib = 2**20
    head = (
        f"worker RSS, {trades:,} trades over {hours:.1f} h of leader time, "
        f"dedup horizon {horizon / 3.6e6:.1f} h"
    )
    steady = [rss for covered, rss in samples if covered >= warm_up]
    growth = [rss / mib for _, rss in samples[:: max(1, len(samples) // 8)]]
    trend = "RSS through the run (MiB): " + " ".join(f"{r:.0f}" for r in growth)
    if len(steady) < 2:
        return (
            f"{head}: the tape never passes the horizon (+{MEMORY_MARGIN_MS // 60_000} min), so the dedup "
            f"memory grows by design; use more --trades or a shorter --dedup-window-ms\n{trend}"
        )
    low, high = min(steady), max(steady)
    mid = (low + high) / 2
    return (
        f"{head}: {len(steady)} samples after warm-up ({warm_up:,} trades decided): min {low / mib:.0f} MiB, "
        f"max {high / mib:.0f} MiB, ±{(high - low) / 2 / mid * 100:.1f}% around {mid / mib:.0f} MiB\n{trend}"
    )


# --- main ------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades", type=int, default=None, help="tape trades (50k; --memory: 1M)")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds (B0, B1, W each)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency", action="store_true", help="latency at a steady offered load")
    parser.add_argument("--rate", type=int, default=1_000, help="--latency: trades per second")
    parser.add_argument("--seconds", type=int, default=30, help="--latency: how long to offer")
    parser.add_argument("--memory", action="store_true", help="worker RSS over a long run")
    parser.add_argument(
        "--dedup-window-ms", type=int, default=None, help="--memory: a GLOBAL dedupWindowMs for the tape"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="deadline of each step (s)")
    args = parser.parse_args()
    if args.trades is None:
        args.trades = 1_000_000 if args.memory else 50_000
    quiet_kafka_logs()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="copybot-live-bench-") as tmp_name:
        tmp = Path(tmp_name)
        port, controller_port = free_ports(2)
        settings = dataclasses.replace(
            broker.BrokerSettings.from_env(),
            port=port,
            controller_port=controller_port,
            data_dir=tmp / "kafka-data",
        )
        try:
            with contextlib.redirect_stdout(sys.stderr):
                handle = broker.start(settings)
            bootstrap = broker.bootstrap(settings)
            if args.latency:
                summary = asyncio.run(latency_run(args, bootstrap, tmp))
            elif args.memory:
                summary = asyncio.run(memory_run(args, bootstrap, tmp))
            else:
                summary = throughput(args, bootstrap, handle.pid, tmp)
        finally:
            with contextlib.redirect_stdout(sys.stderr):
                broker.stop(settings)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
