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

STDOUT_SHA256 = "e5b6436f24b3fed6e227a5941a677f085388788b014adb26564f3200dd1e6756"
STDERR_SHA256 = "a753283251feb1a7e6b4cd6c8c2e3f2968ba55f01d2af18f74d0ffd870e77efe"
SUMMARY_SHA256 = "831222cfb722a44041289759403c282966706b0935fc2fe49b4f3eae97a44101"


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


def test_replay_summary_of_the_sample_tape_has_the_pinned_text() -> None:
    result = replay("--summary")
    assert result.returncode == 0, result.stderr.decode()
    assert sha256(result.stdout) == STDOUT_SHA256
    assert sha256(result.stderr) == SUMMARY_SHA256
