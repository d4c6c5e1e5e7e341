"""``copybot replay`` on the committed sample tape is pinned byte for byte (issue 7: no behaviour change).

If a change alters these digests on purpose, it changes the product's output: say so in the commit and update
the digest; a refactor must never need to.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-tape.jsonl"

# Issue 8 (SPEC 13) changed stdout on purpose: every attempt's budget block gained "reservedMicros" (0 here:
# no orders in paper mode) and leaderBook lines are interleaved (system.bookIntervalMs defaults to 1000).
# PRE_VENUE_STDOUT_SHA256 is the issue-7 pin: stripping both gives it back byte for byte.
STDOUT_SHA256 = "c6eeaed7234dd96a3331b2ad4823123f6c8015af19a5150a30d3663d7687b0ae"
PRE_VENUE_STDOUT_SHA256 = "e5b6436f24b3fed6e227a5941a677f085388788b014adb26564f3200dd1e6756"
STDERR_SHA256 = "a753283251feb1a7e6b4cd6c8c2e3f2968ba55f01d2af18f74d0ffd870e77efe"
# Issue 8: the summary table gained realized/unrealized PnL, open orders and reserved budget per leader,
# and its last line counts book events and ignored execution reports.
SUMMARY_SHA256 = "9bf03744ff93c9dba6745c464637b88da1a4c7656313c3bb65a8c313badce532"


def replay(*extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(SAMPLE.relative_to(ROOT)), *extra],
        capture_output=True,
        cwd=ROOT,
        check=False,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_replay_of_the_sample_tape_has_the_pinned_output() -> None:
    result = replay()
    assert result.returncode == 0, result.stderr.decode()
    assert sha256(result.stdout) == STDOUT_SHA256
    assert sha256(result.stderr) == STDERR_SHA256


def test_without_reserved_micros_and_leader_books_the_output_is_the_pre_venue_one() -> None:
    # SPEC 13.7: with the defaults and no resolution or report, attempts are those of sections 1-12 field for
    # field, plus budget.reservedMicros = 0 (written last in the budget block).
    stdout = replay().stdout
    lines = stdout.splitlines()
    attempts = [line for line in lines if line.startswith(b'{"kind":"copyAttempt"')]
    books = [line for line in lines if line.startswith(b'{"kind":"leaderBook"')]
    assert len(attempts) + len(books) == len(lines)
    assert all(line.count(b',"reservedMicros":0}') == 1 for line in attempts)
    stripped = b"".join(line.replace(b',"reservedMicros":0}', b"}") + b"\n" for line in attempts)
    assert sha256(stripped) == PRE_VENUE_STDOUT_SHA256


def test_replay_summary_of_the_sample_tape_has_the_pinned_text() -> None:
    result = replay("--summary")
    assert result.returncode == 0, result.stderr.decode()
    assert sha256(result.stdout) == STDOUT_SHA256
    assert sha256(result.stderr) == SUMMARY_SHA256
