"""``copybot`` as a user runs it: ``python -m streams.cli ARGS`` in a process of its own, output captured."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def copybot(
    *args: str,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    text: bool = False,
    timeout_s: float | None = None,
) -> subprocess.CompletedProcess[Any]:
    """Run ``copybot ARGS`` from the repository root (whatever its exit code); stdout and stderr are bytes,
    or str with `text`."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=text,
        timeout=timeout_s,
        check=False,
    )
