"""``copybot replay`` and ``copybot sample-tape`` as a user runs them (real processes, real files)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from models.events import CopyAttempt, DeadLetter
from tests.cli import ROOT, copybot
from tests.factories import T0, trade_wire

SAMPLE = ROOT / "examples" / "sample-tape.jsonl"


def lines(data: bytes) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def test_replay_of_the_sample_tape_is_byte_identical_and_complete() -> None:
    first = copybot("replay", str(SAMPLE))
    second = copybot("replay", str(SAMPLE))
    assert first.returncode == 0, first.stderr.decode()
    assert first.stdout == second.stdout
    assert first.stderr == second.stderr
    attempts = [CopyAttempt.model_validate(a) for a in lines(first.stdout) if a["kind"] == "copyAttempt"]
    assert len(attempts) > 1_000
    # conservation over the committed tape: every distinct (leader, tradeId) in exactly one attempt
    tape = lines(SAMPLE.read_bytes())
    accepted = {(e["followedUserId"], e["tradeId"]) for e in tape if e["kind"] == "leaderTrade"}
    covered = [(a.followed_user_id, t) for a in attempts for t in a.trade_ids]
    assert len(covered) == len(set(covered))
    assert set(covered) == accepted
    assert {a.source_type for a in attempts} == {"AGGREGATOR", "IMMEDIATE", "BUFFER"}
    assert {a.decision for a in attempts} == {"EXECUTE", "SKIP"}


def test_committed_sample_tape_matches_the_generator() -> None:
    generated = copybot("sample-tape")
    assert generated.returncode == 0
    assert generated.stdout == SAMPLE.read_bytes()


def test_replay_reads_stdin_and_reports_bad_lines_as_dead_letters() -> None:
    good = orjson.dumps(trade_wire("u1", at=T0, trade_id="t1", market=None))
    bad_price = good.replace(b'"priceMicros":500000', b'"priceMicros":0')
    tape = b"\n".join([good, b"", b"{not json", bad_price, b'{"kind":"mystery"}', b"[1,2]"]) + b"\n"
    result = copybot("replay", "-", stdin=tape)
    assert result.returncode == 0
    (attempt,) = [a for a in lines(result.stdout) if a["kind"] == "copyAttempt"]
    assert attempt["tradeIds"] == ["t1"]
    letters = [DeadLetter.model_validate(d) for d in lines(result.stderr)]
    assert [d.offset for d in letters] == [2, 3, 4, 5]  # 0-based line numbers; the blank line is skipped
    assert [d.source_topic for d in letters] == [
        "replay",
        "copybot.leader-trades",
        "replay",
        "replay",
    ]
    assert letters[1].key == "u1"
    assert "priceMicros" in letters[1].error
    assert letters[0].value == "{not json"
    assert all(d.at_ms == T0 and d.partition == 0 for d in letters)


def test_dead_letter_value_is_truncated_to_1000_characters() -> None:
    result = copybot("replay", "-", stdin=b'{"kind":"tick","nowMs":"' + b"x" * 5000 + b'"}\n')
    (letter,) = lines(result.stderr)
    assert len(str(letter["value"])) == 1000


def test_unreadable_input_exits_nonzero_with_a_clear_message(tmp_path: Path) -> None:
    result = copybot("replay", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 1
    assert b"cannot read" in result.stderr
    assert result.stdout == b""


def test_summary_and_output_files(tmp_path: Path) -> None:
    out, diag = tmp_path / "attempts.jsonl", tmp_path / "diagnostics.jsonl"
    result = copybot("replay", str(SAMPLE), "-o", str(out), "--diagnostics", str(diag), "--summary")
    assert result.returncode == 0
    assert result.stdout == b""
    text = result.stderr.decode()
    for header in ("leader", "B_u", "E_u", "r_u", "our exposure", "headroom", "util", "top skip reasons"):
        assert header in text
    assert "Whale (whale)" in text
    assert "$30.00" in text
    assert out.read_bytes() == copybot("replay", str(SAMPLE)).stdout
    rejected = [d for d in lines(diag.read_bytes()) if d["kind"] == "configRejected"]
    assert rejected
    assert any("budgetRMinBps" in e for e in rejected[0]["errors"])  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", [[], ["replay"], ["sample-tape"]])
def test_help_explains_each_command(command: list[str]) -> None:
    result = copybot(*command, "--help")
    assert result.returncode == 0
    assert b"usage: copybot" in result.stdout
