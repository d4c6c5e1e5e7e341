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
from hypothesis import given, settings
from hypothesis import strategies as st

from models.codec import leader_to_json, partition_to_json
from models.engine import process
from models.state import PartitionState
from streams.sample_tape import generate
from streams.serde import decode_event
from streams.worker import records
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
    """The sample tape as one partition's log, with a one-minute dedup window (so memory is forgotten
    and buckets expire), the reports fill model with execution reports for some attempts (orders,
    reservations, timeouts), a market resolution, redelivered duplicates and a malformed line."""
    lines = [orjson.dumps(_change("short-memory", {"dedupWindowMs": 60_000, "fillModel": "reports"}))]
    for line in generate(trades=2_500, seed=5):
        event = orjson.loads(line)
        if event["kind"] == "configChange" and "system" in event:  # a section replaces the stored one
            event["system"].update(dedupWindowMs=60_000, fillModel="reports", orderTimeoutMs=5_000)
        lines.append(orjson.dumps(event))
    lines = _with_reports_and_a_resolution(lines)
    lines.append(b'{"kind": "leaderTrade"}')
    return [Message("log", 0, i, None, line) for i, line in enumerate(lines)]


def _change(change_id: str, system: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "configChange",
        "changeId": change_id,
        "scope": "GLOBAL",
        "followedUserId": None,
        "changedAtMs": 0,
        "system": system,
    }


def _with_reports_and_a_resolution(lines: list[bytes]) -> list[bytes]:
    """Reports (partial, filled, rejected, repeated) a few events after some EXECUTEs, and one asset
    resolved two thirds in."""
    state = PartitionState()
    later: dict[int, list[bytes]] = {}
    asset = None
    for i, line in enumerate(lines):
        for out in process(state, decode_event(line)):
            if isinstance(out, dict) and out["decision"] == "EXECUTE" and i % 3:
                asset = asset or out["assetId"]
                shares, notional = out["targetShareMicros"], out["targetNotionalMicros"]
                status = ("PARTIAL", "FILLED", "REJECTED")[i % 3]
                report = {
                    "kind": "executionReport",
                    "reportId": f"r-{i}",
                    "attemptId": out["attemptId"],
                    "followedUserId": out["followedUserId"],
                    "status": status,
                    "filledShareMicros": shares // 2,
                    "filledNotionalMicros": notional // 2,
                    "reportedAtMs": 0,
                }
                later.setdefault(i + 7, []).append(orjson.dumps(report))
                later.setdefault(i + 9, []).append(orjson.dumps(report))  # a repeat: silent
    resolution = {"kind": "marketResolved", "assetId": asset, "marketId": None, "payoutMicros": 1_000_000}
    later.setdefault(2 * len(lines) // 3, []).append(orjson.dumps({**resolution, "resolvedAtMs": 0}))
    out_lines: list[bytes] = []
    for i, line in enumerate(lines):
        out_lines.append(line)
        out_lines += later.get(i, [])
    return out_lines


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
    _, saved, table, outputs = uninterrupted
    kinds = {o.get("kind") for o in (orjson.loads(v) for v in itertools.chain(*outputs))}
    assert {"copyAttempt", "positionSettled", "orderExpired", "leaderBook"} <= kinds
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


def _buy(i: int, trade_id: str, leader_id: str, asset_id: str) -> bytes:
    """The i-th of a run of BUY trades 10 ms apart."""
    trade = {
        "kind": "leaderTrade",
        "tradeId": trade_id,
        "followedUserId": leader_id,
        "assetId": asset_id,
        "marketId": None,
        "side": "BUY",
        "priceMicros": 500_000,
        "shareMicros": 1_000_000,
        "notionalMicros": 500_000,
        "detectTimeMs": 1_793_600_000_000 + i * 10,
    }
    return orjson.dumps(trade)


def test_a_whale_batch_of_ten_thousand_trades_is_saved_in_records_kafka_accepts() -> None:
    # Given one batch of 10,000 whale trades with long ids (Polymarket's token ids are 77 digits)
    asset = "7" * 77
    lines = [_buy(i, f"{i:064x}", "whale", asset[:-3] + f"{i % 500:03d}") for i in range(10_000)]
    saved = SavedPartition(restore(0, NOTHING.get).state, -1)
    batch = [Message("log", 0, i, None, line) for i, line in enumerate(lines)]
    dirty = decide_batch(saved, batch, [], Counters(), TOPICS)
    records = batch_records(0, saved, dirty)
    # Then every record stays far below Kafka's 1 MiB message limit, and they restore the batch
    assert max(len(value or b"") for _, value in records) < 600_000
    restored = restore(0, {k: v for k, v in records if v is not None}.get)
    assert _fingerprint(restored) == _fingerprint(saved)


_ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=70)


@st.composite
def _memory(draw: st.DrawFn) -> dict[str, list[list[Any]]]:
    """A batch's memory columns: a few leaders, each with trade ids, group keys and attempts."""
    memory: dict[str, list[list[Any]]] = {}
    for leader_id in draw(
        st.lists(st.sampled_from(["a", "whale", "0x" + "9" * 40]), unique=True, max_size=3)
    ):
        seen = sorted(draw(st.lists(st.integers(0, 10**6), max_size=30)))
        keys = draw(st.lists(_ids, max_size=20))
        attempts = sorted(draw(st.lists(st.integers(0, 10**6), max_size=20)))
        if not (seen or keys or attempts):
            continue  # a batch's memory names only leaders that remembered something
        memory[leader_id] = [
            seen,
            [draw(_ids) for _ in seen],
            [draw(st.integers(0, 10**6)) for _ in keys],
            keys,
            [draw(st.integers(1, 9)) for _ in keys],
            attempts,
            [draw(_ids) for _ in attempts],
            [draw(st.integers(0, 1)) for _ in attempts],
        ]
    return memory


@settings(max_examples=300, deadline=None)
@given(memory=_memory(), limit=st.integers(60, 2_000))
def test_memory_chunks_read_back_in_order_give_the_memory(
    memory: dict[str, list[list[Any]]], limit: int
) -> None:
    # Given any memory and a small chunk limit (so leaders are split between rows of every kind)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(records, "CHUNK_BYTES", limit)
        chunks = records.chunked(memory)
    # Then the chunks, collected in order as restore does, are the memory again, none of them empty
    # unless the memory is, and each within the limit but for a single row larger than it
    back: dict[str, list[list[Any]]] = {}
    for chunk in chunks:
        records._collect(back, chunk)
    assert back == memory
    assert all(orjson.loads(chunk) for chunk in chunks) or chunks == [b"{}"]
    for chunk in chunks:
        rows = orjson.loads(chunk)
        estimate = sum(sum(records._row_sizes(u, c)) for u, c in rows.items())
        assert estimate <= limit or sum(len(c[1]) + len(c[3]) + len(c[6]) for c in rows.values()) == 1


def test_trade_ids_forgotten_within_the_batch_that_added_them_are_not_saved() -> None:
    # Given a one-second dedup window and one batch spanning 50 s of trades, where ids repeat
    # (so some are forgotten and accepted again within the batch)
    lines = [orjson.dumps(_change("tiny-memory", {"dedupWindowMs": 1_000}))]
    lines += [_buy(i, f"t{i % 700}", ("whale", "minnow")[i % 2], f"asset-{i % 5}") for i in range(5_000)]
    saved = SavedPartition(restore(0, NOTHING.get).state, -1)
    batch = [Message("log", 0, i, None, line) for i, line in enumerate(lines)]
    dirty = decide_batch(saved, batch, [], Counters(), TOPICS)
    table = {k: v for k, v in batch_records(0, saved, dirty) if v is not None}
    # Then the saved memory is exactly what the core still remembers, and it restores the batch
    restored = restore(0, table.get)
    for leader_id, leader in saved.state.leaders.items():
        assert restored.state.leaders[leader_id].seen_trade_ids == leader.seen_trade_ids
        assert len(leader.seen_trade_ids) < 700
    assert _fingerprint(restored) == _fingerprint(saved)
