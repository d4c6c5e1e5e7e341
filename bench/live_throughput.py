"""Throughput of the live system (a ``copybot worker`` on a real Kafka broker), as a ratio to a plain
aiokafka consume→produce passthrough over the same messages, on the same broker, in the same run.

    .venv/bin/python bench/live_throughput.py [--trades 100000] [--partitions 8] [--rounds 1]

It starts its own embedded broker (free ports, a temporary data dir; stopped at the end, also on errors),
then, after one untimed warm-up baseline run, measures interleaved (baseline, copybot, baseline, …,
copybot, baseline):

- **baseline**: the decision log the worker will read (the tape's lines routed into the leader-trades
  partitions as the worker sees them: trades by leader, ticks / config changes / global snapshots in
  every partition, plus the final tick) is pre-filled into a topic once; each baseline run times a loop
  that ``getmany``-s batches of up to 4,000 (the worker's batch), bumps a dict counter per message key,
  ``send``-s every message to an output topic (acks=all, linger 5 ms, the futures gathered per batch) and
  commits per batch. Reported in msgs/s.
- **copybot**: a fresh topic prefix and app id; topics created; the sample tape (``--trades``) published
  (not ``--ordered``) and a final tick one day past the tape's end into every leader-trades partition (so
  every window and buffer closes); *then* a worker subprocess starts (``COPYBOT_TICKS=0``, its data dir in
  a temp dir). Timed from the worker's "[^Worker]: Ready" log line to the moment a consumer (started
  before the worker) has seen copy attempts covering every accepted (leader, tradeId) of the tape (valid
  trade lines, deduplicated). trades/s = accepted trades / time; events/s = messages of leader-trades the
  worker consumes / time, counted from the tape: trade lines (redelivered duplicates included) + ticks ×
  partitions + snapshots (1, or partitions for EXEC_GLOBAL) + config changes × partitions + the final
  tick × partitions. The snapshot and config copies are appended by the worker after the final tick, so
  some of them (~1%) may still be unread when the clock stops; the log's real end offsets are printed too.

Each copybot round's ratio uses the mean of the two baseline runs around it; the summary line (stdout)
gives medians. Progress goes to stderr. Caveat: as every input is published before the worker starts,
the worker copies the config changes and snapshots into its log after all trades, so the trades are
decided under the default config (no budgets or buffering), not the sample session's config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.events import LeaderTrade  # noqa: E402
from streams.devbroker import broker  # noqa: E402
from streams.devbroker.broker import free_ports  # noqa: E402
from streams.kafka.admin import create_topics  # noqa: E402
from streams.kafka.client import CopybotClient, quiet_kafka_logs  # noqa: E402
from streams.publish import publish_lines  # noqa: E402
from streams.sample_tape import generate  # noqa: E402
from streams.serde import DecodeError, decode_event  # noqa: E402
from streams.settings import COPY_ATTEMPTS, TRADES, Settings  # noqa: E402
from streams.topology import log_partitions, route  # noqa: E402

READY_LINE = "[^Worker]: Ready"
BATCH = 4_000
"""Records per baseline batch: the worker's ``take_events`` batch (streams.worker.app.BATCH_MAX)."""
FINAL_TICK_AFTER_MS = 86_400_000
"""The final tick is this far past the tape's last time: beyond every window and buffer deadline."""
POLL_S = 0.02
"""Polling interval of the worker's log (the resolution of the Ready timestamp)."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the tape ----------------------------------------------------------------------------------------


@dataclass
class Tape:
    lines: list[bytes]
    """Every line of the sample tape (the publisher validates and skips invalid ones itself)."""
    accepted: set[tuple[str, str]]
    """(leader, tradeId) of every valid trade line: what the copy attempts must cover."""
    log: list[tuple[int, bytes | None, bytes]]
    """(partition, key, value) of every message the worker reads from leader-trades, final tick included."""
    log_kinds: Counter[str]
    """Messages of ``log`` per kind (a tick counts once per partition)."""
    kinds: Counter[str]
    """Valid tape lines per kind."""
    invalid: int
    final_tick_ms: int


def load_tape(trades: int, seed: int, partitions: int) -> Tape:
    lines = [line for line in generate(trades=trades, seed=seed) if line.strip()]
    accepted: set[tuple[str, str]] = set()
    log: list[tuple[int, bytes | None, bytes]] = []
    log_kinds: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    invalid = 0
    last_ms = 0
    for raw in lines:
        try:
            event = decode_event(raw)
        except DecodeError:
            invalid += 1
            continue
        kinds[event.kind] += 1
        if isinstance(event, LeaderTrade):
            accepted.add((event.followed_user_id, event.trade_id))
            last_ms = max(last_ms, event.detect_time_ms)
        elif event.kind == "tick":
            last_ms = max(last_ms, event.now_ms)
        _, key = route(event)
        key_bytes = None if key is None else key.encode()
        for p in log_partitions(event, partitions):
            log.append((p, key_bytes, raw))
            log_kinds[event.kind] += 1
    final_tick_ms = last_ms + FINAL_TICK_AFTER_MS
    final = orjson.dumps({"kind": "tick", "nowMs": final_tick_ms})
    for p in range(partitions):
        log.append((p, None, final))
    log_kinds["final tick"] += partitions
    return Tape(lines, accepted, log, log_kinds, kinds, invalid, final_tick_ms)


# --- baseline: plain aiokafka ------------------------------------------------------------------------


async def create_plain_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=n, num_partitions=partitions, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def prefill(bootstrap: str, topic: str, log: list[tuple[int, bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=10, max_batch_size=1_048_576
    )
    await producer.start()
    try:
        futures = []
        for partition, key, value in log:
            futures.append(await producer.send(topic, value, key=key, partition=partition))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def baseline_once(
    bootstrap: str, src: str, dst: str, partitions: int, total: int, timeout_s: float
) -> float:
    """Seconds to consume `total` messages of `src`, count them by key, produce them to `dst`, commit."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-baseline-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1_048_576
    )
    await consumer.start()
    try:
        await producer.start()
        try:
            tps = [TopicPartition(src, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            # Find the group coordinator (and commit the start) before the clock starts.
            await consumer.commit({tp: await consumer.position(tp) for tp in tps})
            counts: dict[bytes | None, int] = {}
            seen = 0
            deadline = time.monotonic() + timeout_s
            started = time.perf_counter()
            while seen < total:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"baseline: {seen:,} of {total:,} messages after {timeout_s:.0f}s")
                batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
                futures = []
                for records in batches.values():
                    for record in records:
                        counts[record.key] = counts.get(record.key, 0) + 1
                        futures.append(await producer.send(dst, record.value, key=record.key))
                    seen += len(records)
                if futures:
                    await asyncio.gather(*futures)
                    await consumer.commit()
            return time.perf_counter() - started
        finally:
            await producer.stop()
    finally:
        await consumer.stop()


# --- copybot: a live worker --------------------------------------------------------------------------


@dataclass
class LiveResult:
    seconds: float
    """From the worker's Ready line to every accepted trade covered by an attempt."""
    first_attempt_s: float
    """From Ready to the first attempt seen (startup: partition assignment, table recovery)."""
    attempts: int
    log_end: int
    """Sum of leader-trades end offsets when the last trade was covered."""


class Worker:
    """A ``copybot worker`` subprocess in its own session, logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._read = 0
        self._tail = b""

    def saw(self, text: str) -> bool:
        """Whether `text` appeared in the log (read incrementally)."""
        with self.log_path.open("rb") as log:
            log.seek(self._read)
            chunk = log.read()
        self._read += len(chunk)
        self._tail = (self._tail + chunk)[-(len(text) + 4096) :]
        return text.encode() in self._tail

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker exited ({self.process.returncode}):\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            say(f"worker did not stop within {timeout_s:.0f}s of SIGTERM: SIGKILL")
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout_s)


async def publish_tape(settings: Settings, tape: Tape) -> None:
    await create_topics(settings)
    async with CopybotClient(settings, create_topics=False, client_id="bench-publish") as client:
        summary = await publish_lines(client, tape.lines)
        await client.publish_tick(tape.final_tick_ms)
        await client.flush()
    if summary.invalid != tape.invalid or summary.kinds != tape.kinds:
        raise RuntimeError(f"published {dict(summary.kinds)}, expected {dict(tape.kinds)}")


async def run_live(
    settings: Settings, tape: Tape, env: dict[str, str], workdir: Path, timeout_s: float
) -> LiveResult:
    """Start the worker and time it from Ready until the attempts cover every accepted trade."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    worker: Worker | None = None
    try:
        attempt_tps = [TopicPartition(settings.topic(COPY_ATTEMPTS), p) for p in range(settings.partitions)]
        trade_tps = [TopicPartition(settings.topic(TRADES), p) for p in range(settings.partitions)]
        consumer.assign(attempt_tps)
        await consumer.seek_to_beginning(*attempt_tps)
        remaining = set(tape.accepted)
        attempts = 0
        worker = Worker(env, workdir / "worker.log")
        deadline = time.monotonic() + timeout_s
        ready_at: float | None = None
        first_at: float | None = None
        while ready_at is None:
            worker.check_alive()
            if worker.saw(READY_LINE):
                ready_at = time.perf_counter()
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker was not ready within {timeout_s:.0f}s:\n{worker.log_tail()}")
            await asyncio.sleep(POLL_S)  # polling the log for a condition, with a deadline
        say("  worker ready")
        next_report = time.monotonic() + 10.0
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(remaining):,} of {len(tape.accepted):,} trades still without an attempt after "
                    f"{timeout_s:.0f}s:\n{worker.log_tail()}"
                )
            worker.check_alive()
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                for record in records:
                    attempt = orjson.loads(record.value)
                    leader = attempt["followedUserId"]
                    for trade_id in attempt["tradeIds"]:
                        remaining.discard((leader, trade_id))
                attempts += len(records)
            if first_at is None and attempts:
                first_at = time.perf_counter()
            if time.monotonic() > next_report:
                next_report += 10.0
                covered = len(tape.accepted) - len(remaining)
                say(f"  {covered:,}/{len(tape.accepted):,} trades covered, {attempts:,} attempts")
        done_at = time.perf_counter()
        log_end = sum((await consumer.end_offsets(trade_tps)).values())
        return LiveResult(done_at - ready_at, (first_at or done_at) - ready_at, attempts, log_end)
    finally:
        try:
            if worker is not None:
                worker.stop()
        finally:
            await consumer.stop()


def copybot_once(bootstrap: str, tape: Tape, partitions: int, workdir: Path, timeout_s: float) -> LiveResult:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "COPYBOT_BOOTSTRAP": bootstrap,
        "COPYBOT_TOPIC_PREFIX": prefix,
        "COPYBOT_APP_ID": prefix,
        "COPYBOT_PARTITIONS": str(partitions),
        "COPYBOT_TICKS": "0",
        "COPYBOT_WORKER_DIR": str(workdir / "worker-data"),
        "COPYBOT_WORKER_WEB_PORT": str(free_ports(1)[0]),
    }
    settings = Settings.from_env(env)
    started = time.perf_counter()
    asyncio.run(asyncio.wait_for(publish_tape(settings, tape), timeout_s))
    say(f"  published the tape ({prefix}) in {time.perf_counter() - started:.1f}s; starting the worker")
    return asyncio.run(run_live(settings, tape, env, workdir, timeout_s))


# --- main --------------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, bootstrap: str, tape: Tape, tmp: Path) -> str:
    total = len(tape.log)
    trades = len(tape.accepted)
    src, dst = f"bench{uuid.uuid4().hex[:8]}.base-in", f"bench{uuid.uuid4().hex[:8]}.base-out"
    asyncio.run(create_plain_topics(bootstrap, [src, dst], args.partitions))
    started = time.perf_counter()
    asyncio.run(asyncio.wait_for(prefill(bootstrap, src, tape.log), args.timeout))
    say(f"pre-filled {src} with {total:,} messages in {time.perf_counter() - started:.1f}s")

    def baseline() -> float:
        seconds = asyncio.run(baseline_once(bootstrap, src, dst, args.partitions, total, args.timeout))
        say(f"baseline: {total:,} msgs in {seconds:.2f}s = {total / seconds:,.0f} msgs/s")
        return total / seconds

    say("warm-up (untimed): one baseline run, so the broker's group coordinator and JIT are warm")
    asyncio.run(baseline_once(bootstrap, src, dst, args.partitions, total, args.timeout))
    base_rates = [baseline()]
    trade_rates, event_rates, event_ratios, trade_ratios = [], [], [], []
    for n in range(args.rounds):
        say(f"round {n + 1}/{args.rounds}: copybot")
        workdir = tmp / f"round-{n + 1}"
        workdir.mkdir()
        live = copybot_once(bootstrap, tape, args.partitions, workdir, args.timeout)
        trade_rates.append(trades / live.seconds)
        event_rates.append(total / live.seconds)
        say(
            f"copybot: {trades:,} trades ({total:,} events) in {live.seconds:.2f}s after Ready "
            f"(first attempt after {live.first_attempt_s:.2f}s) = {trade_rates[-1]:,.0f} trades/s, "
            f"{event_rates[-1]:,.0f} events/s; {live.attempts:,} attempts; leader-trades end offsets "
            f"{live.log_end:,} (estimate {total:,})"
        )
        base_rates.append(baseline())
        around = (base_rates[-2] + base_rates[-1]) / 2
        event_ratios.append(event_rates[-1] / around)
        trade_ratios.append(trade_rates[-1] / around)
        say(
            f"round {n + 1}/{args.rounds}: ratio events {event_ratios[-1]:.3f}, trades {trade_ratios[-1]:.3f}"
        )
    return (
        f"live copybot ({trades:,} trades, {total:,} events, {args.partitions} partitions): "
        f"{statistics.median(trade_rates):,.0f} trades/s, {statistics.median(event_rates):,.0f} events/s; "
        f"aiokafka passthrough baseline {statistics.median(base_rates):,.0f} msgs/s; "
        f"ratio events/s÷baseline {statistics.median(event_ratios):.3f}, "
        f"trades/s÷baseline {statistics.median(trade_ratios):.3f} (median of {args.rounds})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--trades", type=int, default=100_000, help="leader trades in the tape (default 100k)"
    )
    parser.add_argument("--partitions", type=int, default=8, help="leader-keyed partitions (default 8)")
    parser.add_argument("--rounds", type=int, default=1, help="copybot rounds, between baselines (default 1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="deadline of each step in seconds (default 900)"
    )
    args = parser.parse_args()
    quiet_kafka_logs()

    tape = load_tape(args.trades, args.seed, args.partitions)
    say(
        f"tape: {len(tape.lines):,} lines ({tape.invalid} invalid), "
        f"{tape.kinds['leaderTrade']:,} trade lines, "
        f"{len(tape.accepted):,} accepted trades; leader-trades messages: "
        + ", ".join(f"{kind} {n:,}" for kind, n in sorted(tape.log_kinds.items()))
        + f" = {len(tape.log):,}"
    )
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
            started = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # its progress lines: stdout is the summary
                broker.start(settings)
            say(f"broker on {broker.bootstrap(settings)} started in {time.perf_counter() - started:.1f}s")
            summary = measure(args, broker.bootstrap(settings), tape, tmp)
        finally:
            with contextlib.redirect_stdout(sys.stderr):
                broker.stop(settings)
            say("broker stopped")
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
