"""The cycle collector's pauses in the worker: how often and how long (logged with the progress line).

The worker keeps every leader's dedup memory (a whale's 24 h is ~10^6 small objects), so a collection of
the oldest generation walks all of it while no batch moves: that is the worker's longest pause, and the
latency tail's first suspect. :func:`tune_gc` sets how often each generation is collected
(:data:`THRESHOLDS`); :class:`GcPauses` measures what that costs through ``gc.callbacks``.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

THRESHOLDS = (20_000, 20, 100)
"""``gc.set_threshold`` for the worker (Python's default: 700, 10, 10). Measured on a 100k-record
backlog (bench/live_throughput.py, BENCH_THREADS=1): the default made 529/48/3 collections, 327 ms of
a 1.65 s run (a fifth), the longest 94 ms (a full collection); these made 11-13 young ones, 66-75 ms,
the longest 11-24 ms (three runs), and the latency p99 at 1,000 trades/s went under 50 ms. What the
worker allocates per event (a decoded trade, its outputs, a few tuples) is freed by reference
counting; cycles (asyncio's futures and tracebacks) are still collected, only less often, and a full
collection stays possible (Python also holds it back until the survivors grew by 25 %). The memory
benchmark (``--memory``) checks that RSS stays flat."""


def tune_gc() -> None:
    """Collect young objects every 20,000 net allocations, not 700 (:data:`THRESHOLDS`)."""
    gc.set_threshold(*THRESHOLDS)


@dataclass
class GcPauses:
    """Collections and their pause time per generation since :meth:`install`."""

    count: list[int] = field(default_factory=lambda: [0, 0, 0])
    total_s: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    longest_s: float = 0.0
    _started: float = 0.0

    def install(self) -> GcPauses:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
            return
        pause = now - self._started
        generation = int(info["generation"])
        self.count[generation] += 1
        self.total_s[generation] += pause
        self.longest_s = max(self.longest_s, pause)

    def summary(self) -> str:
        """E.g. ``GC 812/71/2 collections (gen 0/1/2), 95 ms in all, longest 41 ms``."""
        counts = "/".join(str(n) for n in self.count)
        return (
            f"GC {counts} collections (gen 0/1/2), {sum(self.total_s) * 1000:.0f} ms in all, "
            f"longest {self.longest_s * 1000:.0f} ms"
        )


__all__ = ["THRESHOLDS", "GcPauses", "tune_gc"]
