"""What ``copybot demo`` tells from the sample tape (streams/demo.py): the settlement that frees a HARD
budget, and the per-partition replay it compares the live run with."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from models.summary import summarize
from streams.demo import DEFAULT_TAPE, Expected, freed_budget, merged, tallies, tape_replay
from streams.devbroker.harness import finish_tick, tape_events
from streams.replay import replay
from streams.sample_tape import generate

PARTITIONS = 8


def _expected(path: Path, partitions: int = PARTITIONS) -> Expected:
    events = tape_events(path)
    return tape_replay(events, partitions, finish_tick(events, partitions))


@pytest.fixture(scope="module")
def sample() -> Expected:
    return _expected(DEFAULT_TAPE)


def test_alices_won_market_frees_her_full_hard_budget_and_she_is_copied_again(sample: Expected) -> None:
    freed = freed_budget(sample.outputs)
    assert freed is not None
    assert freed.leader_id == "alice"
    assert freed.settlement["payoutMicros"] == 1_000_000
    assert freed.settlement["realizedPnlMicros"] > 0
    assert freed.headroom_before < 1_000_000 < 30_000_000 < freed.headroom_after
    assert freed.capped_before > 0
    assert freed.copied_after > 0


def test_each_small_leader_has_one_settlement_one_won_and_the_others_lost(sample: Expected) -> None:
    settled = {b["followedUserId"]: b for b in sample.book_events() if b["kind"] == "positionSettled"}
    assert sorted(settled) == ["alice", "bob", "carol"]
    assert {u: b["payoutMicros"] for u, b in settled.items()} == {"alice": 1_000_000, "bob": 0, "carol": 0}
    assert all(b["realizedPnlMicros"] < 0 for u, b in settled.items() if u != "alice")


def test_on_one_partition_the_demos_replay_is_copybot_replay() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    replay(DEFAULT_TAPE.read_bytes().splitlines(), out, err)
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    single = {a["attemptId"]: a for a in lines if a["kind"] == "copyAttempt"}
    one = _expected(DEFAULT_TAPE, partitions=1)
    assert {a["attemptId"]: a for a in one.attempts()} == single
    settled = [line for line in lines if line["kind"] == "positionSettled"]
    assert [b for b in one.book_events() if b["kind"] == "positionSettled"] == settled


def test_the_summary_has_pnl_per_leader(sample: Expected) -> None:
    rows = {r.leader_id: r for r in summarize(merged(sample.states), tallies(sample.attempts()))}
    assert rows["alice"].realized_pnl_micros > 0 > rows["bob"].realized_pnl_micros


def test_without_resolutions_no_settlement_frees_a_budget(tmp_path: Path) -> None:
    path = tmp_path / "tape.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in generate(resolutions=False)))
    expected = _expected(path)
    assert freed_budget(expected.outputs) is None
    assert not any(b["kind"] == "positionSettled" for b in expected.book_events())
