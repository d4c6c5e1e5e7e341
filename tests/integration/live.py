"""A live copybot system for integration tests: real workers (subprocesses) on the session's broker.

Every system gets its own topic prefix and app id, so tests never see each other's messages. Waiting is
always on a condition with a deadline (a log line, the attempts covering every trade), never a sleep.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.devbroker.harness import WorkerProcess as ShippedWorkerProcess
from streams.devbroker.harness import (
    accepted_trades,
    partitioned_replay,
    read_to_end,
    read_until,
    tape_events,
    wait_until,
)
from streams.kafka.client import CopybotClient as ShippedClient
from streams.replay import replay
from streams.settings import COPY_ATTEMPTS, Settings
from tests.cli import copybot

__all__ = [
    "CopybotClient",
    "LiveSystem",
    "WorkerProcess",
    "accepted_trades",
    "by_attempt_id",
    "partitioned_replay",
    "read_to_end",
    "replay_attempts",
    "tape_events",
    "wait_until",
]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TAPE = ROOT / "examples" / "sample-tape.jsonl"


class CopybotClient(ShippedClient):
    """The shipped client plus what only tests need: ``publish_raw(topic, value, key, partition, headers)``
    queues bytes as they are, **without validation** (to inject bad input); `topic` is a base or full name."""

    publish_raw = ShippedClient._send


class WorkerProcess(ShippedWorkerProcess):
    """The shipped worker subprocess plus waiting for a line in its log."""

    def wait_log(self, text: str, timeout_s: float = 60.0) -> None:
        wait_until(lambda: text in self.current_log(), timeout_s, f"{text!r} in worker {self.name}'s log")


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
        return copybot(*args, env=self.env, text=True, timeout_s=timeout_s)

    def publish(self, tape: Path, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.copybot("publish", str(tape), *args)
        assert result.returncode == 0, f"publish failed:\n{result.stdout}\n{result.stderr}"
        return result

    def read_topic(
        self, name: str, until: Callable[[list[dict[str, Any]]], bool], timeout_s: float
    ) -> list[Any]:
        """Every message of a copybot topic (values as JSON), read until `until(values)` holds."""
        return asyncio.run(read_until(self.bootstrap, self.settings.topic(name), until, timeout_s))

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


# --- what replay says ---------------------------------------------------------------------------------


def replay_attempts(lines: list[bytes]) -> list[dict[str, Any]]:
    """The copy attempts ``copybot replay`` emits for these lines (one partition); its book events
    (leaderBook, positionSettled, orderExpired, SPEC 13) share the stream and are left out."""
    out = io.BytesIO()
    replay(lines, out, io.BytesIO())
    emitted = (orjson.loads(line) for line in out.getvalue().splitlines())
    return [value for value in emitted if value["kind"] == "copyAttempt"]


def by_attempt_id(attempts: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Attempts keyed by attemptId; a repeated id must carry identical contents."""
    result: dict[str, dict[str, Any]] = {}
    for attempt in attempts:
        seen = result.setdefault(attempt["attemptId"], attempt)
        assert seen == attempt, f"two different attempts share the id {attempt['attemptId']}"
    return result
