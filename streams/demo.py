"""The live demo's parts that are not terminal output (``copybot demo`` is :mod:`streams.cli.demo`).

The read side (projector and API subprocesses, ready once the dashboard shows every leader), when the copy
attempts cover every trade, and the state the live partitions saved.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from models.state import PartitionState
from streams.devbroker.harness import ROOT, read_to_end, wait_until
from streams.settings import Settings
from streams.worker.records import merged_state

DEFAULT_TAPE = ROOT / "examples" / "sample-tape.jsonl"


def start_read_side(
    env: dict[str, str],
    db: Path,
    port: int,
    leaders: int,
    processes: list[subprocess.Popen[bytes]],
    timeout_s: float,
) -> str:
    """Start the projector and the API on `db`; return the dashboard URL once it shows every leader."""
    url = f"http://127.0.0.1:{port}"
    for args, log in (
        (["project", "--db", str(db)], "demo-projector.log"),
        (["api", "--db", str(db), "--port", str(port)], "demo-api.log"),
    ):
        with (ROOT / "out" / log).open("wb") as handle:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "streams.cli", *args],
                    env=env,
                    cwd=ROOT,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                )
            )

    def shows_every_leader() -> bool:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(
                    "the projector or the API exited; see out/demo-projector.log, out/demo-api.log"
                )
        try:
            with urllib.request.urlopen(f"{url}/api/budgeted-dynamic/summary", timeout=2) as response:
                body = orjson.loads(response.read())
        except OSError:
            return False
        rows = body if isinstance(body, list) else body.get("leaders", [])
        return len(rows) >= leaders

    wait_until(shows_every_leader, timeout_s, "the dashboard to show every leader", poll_s=0.25)
    return url


def covers(trades: set[tuple[str, str]]) -> Any:
    def covered(values: list[dict[str, Any]]) -> bool:
        return trades <= {(a["followedUserId"], t) for a in values for t in a["tradeIds"]}

    return covered


def _live_state(settings: Settings) -> PartitionState:
    """The live partitions' saved state merged into one view (config and clock agree across them)."""
    changelog = f"{settings.app_id}-partition-state-changelog"
    latest: dict[bytes, bytes | None] = {}
    for record in read_to_end(settings.bootstrap, changelog):
        latest[record.key] = record.value
    return merged_state(latest, settings.partitions)


def live_state(settings: Settings) -> PartitionState:
    """The live partitions' saved state merged into one view (config and clock agree across them)."""
    return _live_state(settings)
