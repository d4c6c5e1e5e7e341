"""Running and watching a live copybot system from Python: ``copybot demo`` (and the tests build on it).

Worker subprocesses with their own log files, reading a topic until a condition holds, and what the
decision core says each partition should decide. Every wait has a deadline; none is a sleep.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import orjson

from models.engine import finish_time, process
from models.events import InputEvent, LeaderTrade, Tick
from models.state import PartitionState
from streams import kafka
from streams.serde import DecodeError, decode_event
from streams.settings import Settings
from streams.topology import log_partitions

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "[^Worker]: Ready"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll `condition` until it holds; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)  # polling interval of a condition wait, not a synchronisation sleep


@dataclass
class WorkerProcess:
    """One ``copybot worker`` subprocess and its log file."""

    name: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self, wait_ready: bool = True, timeout_s: float = 90.0) -> Self:
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
                raise RuntimeError(f"worker {self.name} exited:\n{self.current_log()[-4000:]}")
            return READY_LINE in self.current_log()

        wait_until(ready, timeout_s, f"worker {self.name} to be ready")

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


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record (aiokafka ConsumerRecord) of a topic up to its current end."""
    return asyncio.run(kafka.read_to_end(Settings(bootstrap=bootstrap), topic, timeout_s))


async def read_until(
    bootstrap: str, topic: str, until: Callable[[list[dict[str, Any]]], bool], timeout_s: float
) -> list[Any]:
    """The values (JSON) of a topic from its beginning, read until `until(values)` holds."""
    settings = Settings(bootstrap=bootstrap)
    consumer = kafka.make_consumer(settings, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        tps = await kafka.assign_all(consumer, settings, [topic], timeout_s)
        await consumer.seek_to_beginning(*tps)
        values: list[dict[str, Any]] = []
        while not until(values):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out after {timeout_s:.0f}s reading {topic} ({len(values)} messages)"
                )
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000), max_records=10_000)
            for records in batch.values():
                values.extend(orjson.loads(r.value) for r in records)
        return values
    finally:
        await consumer.stop()


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
            attempts.extend(dict(o) for o in process(states[p], event) if isinstance(o, dict))
    return attempts, states


def finish_tick(events: list[InputEvent], partitions: int) -> int | None:
    """The tick ``copybot publish --finish`` sends: the latest finish time over the partitions."""
    _, states = partitioned_replay(events, partitions, None)
    return max((t for t in map(finish_time, states) if t is not None), default=None)
