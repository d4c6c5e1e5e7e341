"""The compiled decision core (streams/native.py): a stale build is recognised, CI runs compiled, and the
compiled modules decide exactly what the Python sources decide."""

from __future__ import annotations

import importlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streams import native
from streams.replay import replay
from streams.sample_tape import generate

sys.path.insert(0, str(native.ROOT / "bench"))
from replay_throughput import venue_tape


def layout(root: Path) -> None:
    for name in native.COMPILED:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n")


def test_status_tells_absent_current_and_stale_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a source tree with no compiled module
    layout(tmp_path)
    monkeypatch.setattr(native, "ROOT", tmp_path)
    monkeypatch.setattr(native, "STAMP", tmp_path / "stamp")
    assert native.status() == "absent"
    assert native.stale_message() is None
    # a compiled module without a stamp is not trusted
    (tmp_path / "models" / "engine.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    assert native.status() == "stale"
    # the stamp of these sources: current
    (tmp_path / "stamp").write_text(native.source_digest() + "\n")
    assert native.status() == "current"
    assert native.stale_message() is None
    # one edited source makes the build stale, and the message says what to do
    (tmp_path / "models" / "sizing.py").write_text("# edited\n")
    assert native.status() == "stale"
    assert "scripts/build-core" in (native.stale_message() or "")


def test_the_compiled_modules_are_loaded_exactly_when_the_build_is_current() -> None:
    every = {name.removesuffix(".py").replace("/", ".") for name in native.COMPILED}
    for name in every:
        importlib.import_module(name)
    loaded = set(native.compiled_modules())
    assert loaded in (set(), every)
    assert (native.status() == "current") == (loaded == every)
    if os.environ.get("COPYBOT_REQUIRE_NATIVE"):  # set by .ci/run: CI measures and tests the compiled core
        assert loaded == every, f"CI must run the compiled core; build-core status: {native.status()}"


def test_compiled_and_interpreted_core_write_the_same_bytes(tmp_path: Path) -> None:
    # given a tape with the venue loop on (reports, expiries, resolutions) and the sample tape's config
    lines = venue_tape(list(generate(trades=3_000, seed=5)))
    tape = tmp_path / "tape.jsonl"
    tape.write_bytes(b"\n".join(lines) + b"\n")
    # when this process replays it (compiled when built) and a copy of the sources without any
    # compiled module replays it too
    here_out, here_diag = io.BytesIO(), io.BytesIO()
    replay(lines, here_out, here_diag)
    sources = tmp_path / "src"
    for package in ("models", "streams"):
        shutil.copytree(
            native.ROOT / package, sources / package, ignore=shutil.ignore_patterns("*.so", "__pycache__")
        )
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from streams.native import compiled_modules; from streams.replay import replay;"
        "out, diag = open(sys.argv[3], 'wb'), open(sys.argv[4], 'wb');"
        "replay(open(sys.argv[2], 'rb').read().splitlines(), out, diag); out.close(); diag.close();"
        "import models.engine; assert not compiled_modules(), compiled_modules()"
    )
    args = [str(sources), str(tape), str(tmp_path / "out"), str(tmp_path / "diag")]
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # then both wrote exactly the same attempts, book events and diagnostics
    assert here_out.getvalue().count(b"\n") > 1_000
    assert (tmp_path / "out").read_bytes() == here_out.getvalue()
    assert (tmp_path / "diag").read_bytes() == here_diag.getvalue()
