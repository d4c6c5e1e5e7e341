"""``copybot replay`` on the sample tape is pinned byte for byte (issue 7: no behaviour change).

If a change alters these digests on purpose, it changes the product's output: say so in the commit and update
the digest; a refactor must never need to.

Two tapes are pinned. Issue 8 gave the committed tape (``examples/sample-tape.jsonl``) market resolutions:
its pins are ``SAMPLE_*``. The tape as it was before (``copybot sample-tape --no-resolutions``, which the
generator still makes byte for byte: ``PRE_RESOLUTION_TAPE_SHA256``) keeps its earlier pins, so these tests
still prove that with the defaults and no new events the output is what it was: ``PRE_VENUE_STDOUT_SHA256``
is the issue-7 pin (before SPEC 13), given back by stripping ``budget.reservedMicros`` and the leaderBook
lines.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from streams.sample_tape import generate
from tests.projections.venue import VenueSample

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-tape.jsonl"

# The committed tape (issue 8: alice's, bob's and carol's resolutions; positionSettled lines on stdout).
SAMPLE_TAPE_SHA256 = "4e57665452a1648d83a8024bd38b1e614da6f708c79e45cbe00e6c84c38ee063"
SAMPLE_STDOUT_SHA256 = "dc85dea3f6855171335653fdcb720298a3b936ac98e1771656a72d8c8029a449"
SAMPLE_STDERR_SHA256 = "a753283251feb1a7e6b4cd6c8c2e3f2968ba55f01d2af18f74d0ffd870e77efe"
SAMPLE_SUMMARY_SHA256 = "d92274e988f98fcdebe89fee1556e89c5a9d3e9d491e021f6f0db0348c01e6a9"

# The tape without resolutions (the committed tape until issue 8). Issue 8 (SPEC 13) changed its stdout on
# purpose: every attempt's budget block gained "reservedMicros" (0 here: no orders in paper mode) and
# leaderBook lines are interleaved (system.bookIntervalMs defaults to 1000). Stripping both gives the issue-7
# pin back.
PRE_RESOLUTION_TAPE_SHA256 = "e743ea583ba566c40441a1beb973b5944f1d67fb9229c050348249324c3d76c4"
STDOUT_SHA256 = "c6eeaed7234dd96a3331b2ad4823123f6c8015af19a5150a30d3663d7687b0ae"
PRE_VENUE_STDOUT_SHA256 = "e5b6436f24b3fed6e227a5941a677f085388788b014adb26564f3200dd1e6756"
STDERR_SHA256 = "a753283251feb1a7e6b4cd6c8c2e3f2968ba55f01d2af18f74d0ffd870e77efe"
# Issue 8: the summary table gained realized/unrealized PnL, open orders and reserved budget per leader,
# and its last line counts book events and ignored execution reports.
SUMMARY_SHA256 = "9bf03744ff93c9dba6745c464637b88da1a4c7656313c3bb65a8c313badce532"


def replay(tape: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(tape), *extra],
        capture_output=True,
        cwd=ROOT,
        check=False,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def pre_resolution_tape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tape") / "pre-resolution.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in generate(resolutions=False)))
    return path


def test_the_committed_sample_tape_is_what_the_generator_makes() -> None:
    assert sha256(SAMPLE.read_bytes()) == SAMPLE_TAPE_SHA256
    assert sha256(b"".join(line + b"\n" for line in generate())) == SAMPLE_TAPE_SHA256


def test_replay_of_the_sample_tape_has_the_pinned_output() -> None:
    result = replay(SAMPLE.relative_to(ROOT))
    assert result.returncode == 0, result.stderr.decode()
    assert sha256(result.stdout) == SAMPLE_STDOUT_SHA256
    assert sha256(result.stderr) == SAMPLE_STDERR_SHA256
    assert result.stdout.count(b'{"kind":"positionSettled"') == 3


def test_replay_summary_of_the_sample_tape_has_the_pinned_text() -> None:
    result = replay(SAMPLE.relative_to(ROOT), "--summary")
    assert result.returncode == 0, result.stderr.decode()
    assert sha256(result.stdout) == SAMPLE_STDOUT_SHA256
    assert sha256(result.stderr) == SAMPLE_SUMMARY_SHA256


def test_without_resolutions_the_generator_makes_the_earlier_tape(pre_resolution_tape: Path) -> None:
    assert sha256(pre_resolution_tape.read_bytes()) == PRE_RESOLUTION_TAPE_SHA256
    assert b"marketResolved" not in pre_resolution_tape.read_bytes()


def test_replay_of_the_earlier_tape_keeps_its_pinned_output(pre_resolution_tape: Path) -> None:
    result = replay(pre_resolution_tape)
    assert result.returncode == 0, result.stderr.decode()
    assert sha256(result.stdout) == STDOUT_SHA256
    assert sha256(result.stderr) == STDERR_SHA256
    summary = replay(pre_resolution_tape, "--summary")
    assert sha256(summary.stdout) == STDOUT_SHA256
    assert sha256(summary.stderr) == SUMMARY_SHA256


def test_without_reserved_micros_and_leader_books_the_output_is_the_pre_venue_one(
    pre_resolution_tape: Path,
) -> None:
    # SPEC 13.7: with the defaults and no resolution or report, attempts are those of sections 1-12 field for
    # field, plus budget.reservedMicros = 0 (written last in the budget block).
    stdout = replay(pre_resolution_tape).stdout
    lines = stdout.splitlines()
    attempts = [line for line in lines if line.startswith(b'{"kind":"copyAttempt"')]
    books = [line for line in lines if line.startswith(b'{"kind":"leaderBook"')]
    assert len(attempts) + len(books) == len(lines)
    assert all(line.count(b',"reservedMicros":0}') == 1 for line in attempts)
    stripped = b"".join(line.replace(b',"reservedMicros":0}', b"}") + b"\n" for line in attempts)
    assert sha256(stripped) == PRE_VENUE_STDOUT_SHA256


# The reports path (fillModel "reports"): the venue tape of tests/projections/venue.py (orders that fill in
# part, in full, are rejected, expire, stay open; resolutions; a stale and a stray report). Its stdout gained
# the orderUpdated lines (docs/decisions.md 38) on purpose; stripping them gives back the stdout from before
# (PRE_ORDER_UPDATES_VENUE_STDOUT_SHA256), so nothing else on the reports path changed.
VENUE_TAPE_SHA256 = "a410817370d02c5734819aba11236db091bfcec1423b4388b4ad7696aee24ea4"
VENUE_STDOUT_SHA256 = "ba099f43e42fabec7ba7e437d3c5e9a7bedabc3c650dbca3a1f0ff2beaa365cd"
VENUE_STDERR_SHA256 = "ef85907f4cbc33f5cced737c50f799dad1815779bc52c12632dfe3c273163ab4"
PRE_ORDER_UPDATES_VENUE_STDOUT_SHA256 = "f02568ca16faf572e0f6060410025e3366b842aeb0daf1c58f1895f8b864f44e"


def test_replay_of_the_venue_tape_has_the_pinned_output(tmp_path: Path) -> None:
    tape = tmp_path / "venue.jsonl"
    tape.write_bytes(b"".join(line + b"\n" for line in VenueSample().lines))
    assert sha256(tape.read_bytes()) == VENUE_TAPE_SHA256
    result = replay(tape)
    assert result.returncode == 0, result.stderr.decode()
    assert sha256(result.stdout) == VENUE_STDOUT_SHA256
    assert sha256(result.stderr) == VENUE_STDERR_SHA256
    lines = result.stdout.splitlines(keepends=True)
    updates = [line for line in lines if line.startswith(b'{"kind":"orderUpdated"')]
    assert len(updates) == 10
    assert (
        sha256(b"".join(line for line in lines if line not in updates))
        == PRE_ORDER_UPDATES_VENUE_STDOUT_SHA256
    )
