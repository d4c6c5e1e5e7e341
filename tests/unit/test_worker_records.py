"""The worker's state records: a crash at any record of any batch restores the last complete batch.

Pure: the table is a dict, the log a list of messages; the worker's own batch function and record
codec (streams/worker/batch.py, records.py) run exactly as live.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from models.codec import leader_to_json, partition_to_json
from streams.sample_tape import generate
from streams.worker.batch import Counters, Outgoing, OutputTopics, decide_batch
from streams.worker.records import MINUTE_MS, SavedPartition, batch_records, restore

TOPICS = OutputTopics("attempts", "dead-letters", "book-events", "reports")
BATCH = 40
NOTHING: dict[bytes, bytes] = {}


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _log() -> list[Message]:
    """The sample tape with a one-minute dedup window (so memory is forgotten and buckets expire),
    redelivered duplicates, and a malformed line, as one partition's log."""
    short_memory = {
        "kind": "configChange",
        "changeId": "short-memory",
        "scope": "GLOBAL",
        "followedUserId": None,
        "changedAtMs": 0,
        "system": {"dedupWindowMs": 60_000},
    }
    lines = [orjson.dumps(short_memory)]
    for line in generate(trades=2_500, seed=5):
        event = orjson.loads(line)
        if event["kind"] == "configChange" and "system" in event:  # a section replaces the stored one
            event["system"]["dedupWindowMs"] = 60_000
        lines.append(orjson.dumps(event))
    lines.append(b'{"kind": "leaderTrade"}')
    return [Message("log", 0, i, None, line) for i, line in enumerate(lines)]


def _fingerprint(saved: SavedPartition) -> Any:
    state = saved.state
    return (
        partition_to_json(state, saved.offset),
        {u: leader_to_json(leader) for u, leader in sorted(state.leaders.items())},
    )


def _run(saved: SavedPartition, log: list[Message], table: dict[bytes, bytes | None]) -> list[list[Any]]:
    """Decide `log` in batches from `saved`, saving each batch's records into `table`; the outputs
    of each batch."""
    outputs = []
    for start in range(0, len(log), BATCH):
        outgoing: list[Outgoing] = []
        dirty = decide_batch(saved, log[start : start + BATCH], outgoing, Counters(), TOPICS)
        for key, value in batch_records(0, saved, dirty):
            table[key] = value
        outputs.append([o[2] for o in outgoing])
    return outputs


@pytest.fixture(scope="module")
def uninterrupted() -> tuple[list[Message], SavedPartition, dict[bytes, bytes | None], list[list[Any]]]:
    log = _log()
    saved = SavedPartition(restore(0, NOTHING.get).state, -1)
    table: dict[bytes, bytes | None] = {}
    outputs = _run(saved, log, table)
    return log, saved, table, outputs


def test_the_log_spans_minutes_so_memory_is_folded_and_forgotten(uninterrupted: Any) -> None:
    _, saved, table, _ = uninterrupted
    assert saved.state.clock_ms // MINUTE_MS > 2
    assert saved.buckets, "some minutes were folded into bucket records"
    assert any(key.startswith(b"B:") for key in table)
    assert any(leader.forgotten_through_ms >= 0 for leader in saved.state.leaders.values())


def test_restoring_the_final_records_gives_the_final_state(uninterrupted: Any) -> None:
    _, saved, table, _ = uninterrupted
    live = {k: v for k, v in table.items() if v is not None}
    assert _fingerprint(restore(0, live.get)) == _fingerprint(saved)


@pytest.mark.parametrize("crash_batch", [0, 3, 11, 24, 37, 50, 63])
def test_a_crash_at_every_record_of_a_batch_resumes_exactly(uninterrupted: Any, crash_batch: int) -> None:
    log, final, _, outputs = uninterrupted
    # Given a run that saved every batch before `crash_batch` completely ...
    saved = SavedPartition(restore(0, NOTHING.get).state, -1)
    table: dict[bytes, bytes | None] = {}
    _run(saved, log[: crash_batch * BATCH], table)
    outgoing: list[Outgoing] = []
    batch = log[crash_batch * BATCH : (crash_batch + 1) * BATCH]
    dirty = decide_batch(saved, batch, outgoing, Counters(), TOPICS)
    records = batch_records(0, saved, dirty)
    for cut in range(len(records)):  # ... and only the first `cut` records of the next one
        crashed = dict(table)
        for key, value in itertools.islice(records, cut):
            crashed[key] = value
        restored = restore(0, {k: v for k, v in crashed.items() if v is not None}.get)
        # Then it resumes at the last complete batch, and deciding the rest of the log from there
        # gives the uninterrupted run's outputs and final state.
        assert restored.offset == crash_batch * BATCH - 1
        rest = log[restored.offset + 1 :]
        resumed = _run(restored, rest, crashed)
        assert list(itertools.chain(*resumed)) == list(itertools.chain(*outputs[crash_batch:]))
        assert _fingerprint(restored) == _fingerprint(final)
