"""The live demo's parts that are not terminal output (``copybot demo`` is :mod:`streams.cli.demo`).

The read side (projector and API subprocesses, ready once the dashboard shows every leader), when the copy
attempts cover every trade, the state the live partitions saved, what the decision core says each partition
should have produced (from the tape, or from the partition logs as stored in Kafka), whether the live outputs
are exactly that, and the settlement that freed a HARD budget.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from models import engine
from models.events import BOOK_EVENT_KINDS, InputEvent, Tick
from models.state import PartitionState
from models.summary import LeaderSummary, LeaderTally, summarize
from streams.devbroker.harness import ROOT, read_to_end, wait_until
from streams.serde import DecodeError, decode_event, encode
from streams.settings import Settings
from streams.topology import BOOK_EVENTS, COPY_ATTEMPTS, TRADES, log_partitions
from streams.worker.records import merged_state

DEFAULT_TAPE = ROOT / "examples" / "sample-tape.jsonl"


def start_read_side(
    env: dict[str, str],
    db: Path,
    port: int,
    leaders: int,
    processes: list[subprocess.Popen[bytes]],
    timeout_s: float,
) -> str:
    """Start the projector and the API on `db`; return the dashboard URL once it shows every leader."""
    url = f"http://127.0.0.1:{port}"
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


def covers(trades: set[tuple[str, str]]) -> Any:
    def covered(values: list[dict[str, Any]]) -> bool:
        return trades <= {(a["followedUserId"], t) for a in values for t in a["tradeIds"]}

    return covered


def live_state(settings: Settings) -> PartitionState:
    """The live partitions' saved state merged into one view (config and clock agree across them)."""
    changelog = f"{settings.app_id}-partition-state-changelog"
    latest: dict[bytes, bytes | None] = {}
    for record in read_to_end(settings.bootstrap, changelog):
        latest[record.key] = record.value
    return merged_state(latest, settings.partitions)


def merged(states: list[PartitionState]) -> PartitionState:
    """Partition states merged into one view as :func:`live_state` merges the saved ones."""
    view = PartitionState()
    for state in states:
        view.leaders.update(state.leaders)
        if state.clock_ms >= view.clock_ms:
            view.clock_ms, view.config = state.clock_ms, state.config
    return view


Outputs = dict[int, list[dict[str, Any]]]
"""Attempts and book events (wire dicts) per decision partition, in the order they were produced."""
_LIVE_KINDS = frozenset({"copyAttempt", *BOOK_EVENT_KINDS})


@dataclass
class Expected:
    """What the decision core produces from each partition's input: its outputs and its final state."""

    outputs: Outputs
    states: list[PartitionState]

    def attempts(self) -> list[dict[str, Any]]:
        return [o for outs in self.outputs.values() for o in outs if o["kind"] == "copyAttempt"]

    def book_events(self) -> list[dict[str, Any]]:
        return [o for outs in self.outputs.values() for o in outs if o["kind"] != "copyAttempt"]


def _run(inputs: dict[int, list[InputEvent]], partitions: int) -> Expected:
    states = [PartitionState() for _ in range(partitions)]
    outputs: Outputs = {p: [] for p in range(partitions)}
    for p, events in inputs.items():
        for event in events:
            for out in engine.process(states[p], event):
                wire: dict[str, Any] = orjson.loads(encode(out))
                if wire["kind"] in _LIVE_KINDS:
                    outputs[p].append(wire)
    return Expected(outputs, states)


def tape_replay(events: list[InputEvent], partitions: int, finish_tick: int | None) -> Expected:
    """Each partition's share of the tape, as ``copybot publish --ordered --finish`` makes the worker see
    it, run through the core."""
    inputs: dict[int, list[InputEvent]] = {p: [] for p in range(partitions)}
    tail: list[InputEvent] = [] if finish_tick is None else [Tick(kind="tick", now_ms=finish_tick)]
    for event in [*events, *tail]:
        for p in log_partitions(event, partitions):
            inputs[p].append(event)
    return _run(inputs, partitions)


def log_replay(settings: Settings) -> Expected:
    """Each partition's log as stored in Kafka (trades, ticks, and the worker's copies of snapshots,
    config changes, resolutions and execution reports) run through the core."""
    inputs: dict[int, list[InputEvent]] = {p: [] for p in range(settings.partitions)}
    for record in read_to_end(settings.bootstrap, settings.topic(TRADES)):
        try:
            inputs[record.partition].append(decode_event(record.value))
        except DecodeError:
            continue  # the worker dead-letters it
    return _run(inputs, settings.partitions)


def logged_reports(settings: Settings) -> int:
    """How many execution reports the worker has copied into the decision log."""
    return sum(
        b'"executionReport"' in r.value for r in read_to_end(settings.bootstrap, settings.topic(TRADES))
    )


def _canonical(values: list[dict[str, Any]]) -> set[bytes]:
    return {orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values}


def tallies(attempts: list[dict[str, Any]]) -> dict[str, LeaderTally]:
    """Per-leader counts over attempts (each attemptId once)."""
    counts: dict[str, LeaderTally] = defaultdict(LeaderTally)
    for attempt in {a["attemptId"]: a for a in attempts}.values():
        counts[attempt["followedUserId"]].observe(attempt)  # type: ignore[arg-type]
    return dict(counts)


@dataclass
class LiveResult:
    """The live run's outputs and state, and whether they are exactly the core's."""

    attempts: dict[str, dict[str, Any]]
    book_events: list[dict[str, Any]]
    summary: list[LeaderSummary]
    same: bool


def compare_live(settings: Settings, expected: Expected, timeout_s: float) -> LiveResult:
    """Wait (up to `timeout_s`) until the live attempts, book events and saved state equal `expected`:
    attempts by attemptId, book events as a set, and the per-leader summary of the merged state."""
    want_attempts = {a["attemptId"]: a for a in expected.attempts()}
    want_books = _canonical(expected.book_events())
    want_summary = summarize(merged(expected.states), tallies(expected.attempts()))
    seen: dict[str, Any] = {}

    def equal() -> bool:
        attempts = [
            orjson.loads(r.value) for r in read_to_end(settings.bootstrap, settings.topic(COPY_ATTEMPTS))
        ]
        books = [orjson.loads(r.value) for r in read_to_end(settings.bootstrap, settings.topic(BOOK_EVENTS))]
        seen["attempts"] = {a["attemptId"]: a for a in attempts}
        seen["books"] = books
        seen["summary"] = summarize(live_state(settings), tallies(attempts))
        return (
            seen["attempts"] == want_attempts
            and _canonical(books) == want_books
            and seen["summary"] == want_summary
        )

    try:
        wait_until(equal, timeout_s, "the live outputs to equal the replay of each partition", poll_s=0.5)
        same = True
    except TimeoutError:
        same = False
    return LiveResult(seen["attempts"], seen["books"], seen["summary"], same)


WINDOW_MS = 60_000
"""How far before and after a settlement :func:`freed_budget` looks for capped and copied decisions."""


@dataclass(frozen=True)
class FreedBudget:
    """A settlement that gave a HARD-capped leader headroom back, as the decisions around it show."""

    leader_id: str
    settlement: dict[str, Any]
    """The positionSettled output."""
    headroom_before: int
    """Headroom the leader's last decision before the settlement saw."""
    headroom_after: int
    """Headroom the leader's first decision after the settlement saw."""
    capped_before: int
    """BUDGET_HARD_CAP_EXCEEDED skips of the leader in the minute before."""
    copied_after: int
    """BUYs of the leader executed in the minute after."""


def freed_budget(outputs: Outputs) -> FreedBudget | None:
    """Of the settlements of leaders HARD-capped in the minute before, the one freeing the most headroom."""
    found = [f for outs in outputs.values() for i, o in enumerate(outs) if (f := _freed(outs, i)) is not None]
    return max(found, key=lambda f: f.headroom_after - f.headroom_before, default=None)


def _freed(outs: list[dict[str, Any]], i: int) -> FreedBudget | None:
    settled = outs[i]
    if settled["kind"] != "positionSettled":
        return None
    leader, at = settled["followedUserId"], settled["settledAtMs"]

    def hard_decisions(span: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            o
            for o in span
            if o["kind"] == "copyAttempt"
            and o["followedUserId"] == leader
            and o["budget"]["headroomMicros"] is not None
        ]

    before, after = hard_decisions(outs[:i]), hard_decisions(outs[i + 1 :])
    if not before or not after:
        return None
    capped = sum(
        o["decidedAtMs"] >= at - WINDOW_MS and "BUDGET_HARD_CAP_EXCEEDED" in o["reasonCodes"] for o in before
    )
    copied = sum(
        o["decidedAtMs"] <= at + WINDOW_MS and o["decision"] == "EXECUTE" and o["side"] == "BUY"
        for o in after
    )
    headroom_before, headroom_after = (
        before[-1]["budget"]["headroomMicros"],
        after[0]["budget"]["headroomMicros"],
    )
    if capped == 0 or headroom_after <= headroom_before:
        return None
    return FreedBudget(leader, settled, headroom_before, headroom_after, capped, copied)
