"""The compiled decision core: which modules mypyc compiles, and whether a build matches the sources.

The decision core is plain, strictly typed Python. ``scripts/build-core`` (run by ``scripts/_env.sh``,
so by every script and by CI) compiles the modules of :data:`COMPILED` with mypyc into extension modules
next to their sources (``models/engine.cpython-311-x86_64-linux-gnu.so``, …; gitignored). Python
imports an extension module in preference to the ``.py`` beside it, so the same functions then run
compiled: about 1.5x faster, with the same results (``tests/unit/test_native.py`` replays a tape both
ways and compares the bytes). Without a C compiler, or with ``COPYBOT_PURE=1``, nothing is compiled and
the sources run as they are.

The danger of any build step is running code older than its source. The build records a digest of the
sources it compiled (:func:`source_digest`) in :data:`STAMP`; :func:`status` compares it with the sources
on disk, and the CLI refuses to start, and the test session to run, on a stale build
(:func:`stale_message`). This module imports nothing of copybot, so the check runs before the compiled
modules are loaded.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]

COMPILED = (
    "models/units.py",
    "models/state.py",
    "models/config.py",
    "models/sizing.py",
    "models/book.py",
    "models/venue.py",
    "models/decision.py",
    "models/engine.py",
    "models/codec.py",
    "models/summary.py",
    "streams/replay.py",
    "streams/serde.py",
    "streams/worker/batch.py",
    "streams/worker/records.py",
)
"""The sources mypyc compiles: the pure core and the replay loop around it. ``models/events.py`` (pydantic
models: their metaclass is not mypyc's) and everything with IO stay interpreted."""

RUNTIME = "models._native"
"""The build's group name: the mypyc runtime the compiled modules share is ``models/_native__mypyc``."""

STAMP = ROOT / ".cache" / "native" / "stamp"
"""The digest of the sources the compiled modules were built from (written by the build, last)."""

Status = Literal["absent", "current", "stale"]


def source_digest() -> str:
    """SHA-1 over the Python version and every compiled source (path and bytes)."""
    h = hashlib.sha1(sys.version.encode())
    for name in COMPILED:
        h.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    return h.hexdigest()


def extension_files() -> list[Path]:
    """The compiled modules present on disk, and mypyc's runtime they share."""
    found: list[Path] = []
    for name in COMPILED:
        source = ROOT / name
        found += sorted(source.parent.glob(f"{source.stem}.*.so"))
    return found + sorted((ROOT / "models").glob("_native__mypyc.*.so"))


def status() -> Status:
    """``absent`` (the sources run), ``current`` (the compiled modules are these sources) or ``stale``."""
    if not extension_files():
        return "absent"
    try:
        built = STAMP.read_text().strip()
    except OSError:
        return "stale"
    return "current" if built == source_digest() else "stale"


def stale_message() -> str | None:
    """What to do when the compiled core is older than its sources; None when it is not."""
    if status() != "stale":
        return None
    return (
        "the compiled decision core (models/*.so) was built from other sources than those on disk, so "
        "it would run old code: run scripts/build-core to rebuild it, or scripts/build-core --clean to "
        "run the Python sources"
    )


def compiled_modules() -> list[str]:
    """The names of the compiled modules that are loaded from an extension module in this process."""
    names = [name.removesuffix(".py").replace("/", ".") for name in COMPILED]
    return [n for n in names if str(getattr(sys.modules.get(n), "__file__", "")).endswith(".so")]
