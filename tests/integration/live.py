"""A live copybot system for integration tests: real workers (subprocesses) on the session's broker.

Every system gets its own topic prefix and app id, so tests never see each other's messages. Waiting is
always on a condition with a deadline (a log line, the attempts covering every trade), never a sleep.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from models.engine import InputEvent, process
from models.events import LeaderTrade, Tick
from models.state import PartitionState
from streams.replay import replay
from streams.routing import log_partitions
from streams.serde import DecodeError, decode_event
from streams.settings import COPY_ATTEMPTS, Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TAPE = ROOT / "examples" / "sample-tape.jsonl"
READY_LINE = "[^Worker]: Ready"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll `condition` until it holds; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)  # polling interval of a condition wait, not a synchronisation sleep


@dataclass
class WorkerProcess:
    """One ``copybot worker`` subprocess and its log file."""

    name: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self, wait_ready: bool = True, timeout_s: float = 90.0) -> WorkerProcess:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait_ready:
            self.wait_ready(timeout_s)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def current_log(self) -> str:
        return self.log_text().rsplit(f"===== start {self.starts} =====", 1)[-1]

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited:\n{self.current_log()[-4000:]}")
            return READY_LINE in self.current_log()

        wait_until(ready, timeout_s, f"worker {self.name} to be ready")

    def wait_log(self, text: str, timeout_s: float = 60.0) -> None:
        wait_until(lambda: text in self.current_log(), timeout_s, f"{text!r} in worker {self.name}'s log")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class LiveSystem:
    """Topics, workers and a publisher sharing one prefix on the session broker."""

    bootstrap: str
    workdir: Path
    partitions: int = 1
    ticks: bool = False
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "COPYBOT_BOOTSTRAP": self.bootstrap,
            "COPYBOT_TOPIC_PREFIX": self.prefix,
            "COPYBOT_APP_ID": self.prefix,
            "COPYBOT_PARTITIONS": str(self.partitions),
            "COPYBOT_TICKS": "1" if self.ticks else "0",
        }

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def worker(self, name: str = "w1") -> WorkerProcess:
        env = {**self.env, "COPYBOT_WORKER_DIR": str(self.workdir / f"worker-{name}")}
        worker = WorkerProcess(name, env, self.workdir / f"worker-{name}.log")
        self.workers.append(worker)
        return worker

    def copybot(self, *args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def publish(self, tape: Path, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.copybot("publish", str(tape), *args)
        assert result.returncode == 0, f"publish failed:\n{result.stdout}\n{result.stderr}"
        return result

    def read_topic(
        self, name: str, until: Callable[[list[dict[str, Any]]], bool], timeout_s: float
    ) -> list[Any]:
        """Every message of a copybot topic (values as JSON), read until `until(values)` holds."""
        return asyncio.run(_read(self.bootstrap, self.settings.topic(name), until, timeout_s))

    def attempts_covering(
        self, trades: set[tuple[str, str]], timeout_s: float = 120.0
    ) -> list[dict[str, Any]]:
        """Read copy attempts until every (leader, tradeId) in `trades` is in one."""

        def covered(values: list[dict[str, Any]]) -> bool:
            seen = {(a["followedUserId"], t) for a in values for t in a["tradeIds"]}
            return trades <= seen

        return self.read_topic(COPY_ATTEMPTS, covered, timeout_s)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()


async def _assign_all(consumer: AIOKafkaConsumer, topic: str, deadline: float) -> list[TopicPartition]:
    """Assign every partition of `topic` to `consumer` (waiting for the topic's metadata)."""
    partitions = None
    while not partitions:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic} never appeared")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return tps


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record (aiokafka ConsumerRecord) of a topic up to its current end."""

    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout_s
            tps = await _assign_all(consumer, topic, deadline)
            ends = await consumer.end_offsets(tps)
            records: list[Any] = []
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out reading {topic} to its end")
                for batch in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                    records.extend(batch)
            return records
        finally:
            await consumer.stop()

    return asyncio.run(read())


async def _read(
    bootstrap: str, topic: str, until: Callable[[list[dict[str, Any]]], bool], timeout_s: float
) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        await _assign_all(consumer, topic, deadline)
        values: list[dict[str, Any]] = []
        while not until(values):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout_s:.0f}s reading {topic} ({len(values)} messages)"
                )
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000), max_records=10_000)
            for records in batch.values():
                values.extend(orjson.loads(r.value) for r in records)
        return values
    finally:
        await consumer.stop()


# --- what replay says ---------------------------------------------------------------------------------


def tape_events(path: Path) -> list[InputEvent]:
    events = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            try:
                events.append(decode_event(line))
            except DecodeError:
                continue
    return events


def accepted_trades(events: Iterable[InputEvent]) -> set[tuple[str, str]]:
    return {(e.followed_user_id, e.trade_id) for e in events if isinstance(e, LeaderTrade)}


def replay_attempts(lines: list[bytes]) -> list[dict[str, Any]]:
    """What ``copybot replay`` emits for these lines (one partition)."""
    import io

    out = io.BytesIO()
    replay(lines, out, io.BytesIO())
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def partitioned_replay(
    events: list[InputEvent], partitions: int, finish_tick: int | None
) -> tuple[list[dict[str, Any]], list[PartitionState]]:
    """Each partition's share of the tape run through the core, as the live worker sees it, ending with
    the publisher's finish tick. Returns every attempt and the partitions' final states."""
    states = [PartitionState() for _ in range(partitions)]
    attempts: list[dict[str, Any]] = []
    tail: list[InputEvent] = [] if finish_tick is None else [Tick(kind="tick", now_ms=finish_tick)]
    for event in [*events, *tail]:
        for p in log_partitions(event, partitions):
            attempts.extend(dict(o) for o in process(states[p], event)[1] if isinstance(o, dict))
    return attempts, states


def by_attempt_id(attempts: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Attempts keyed by attemptId; a repeated id must carry identical contents."""
    result: dict[str, dict[str, Any]] = {}
    for attempt in attempts:
        seen = result.setdefault(attempt["attemptId"], attempt)
        assert seen == attempt, f"two different attempts share the id {attempt['attemptId']}"
    return result
