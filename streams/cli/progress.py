"""A small progress bar for long work, drawn on a terminal only (never into pipes or files)."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TextIO


class ProgressBar:
    """``with ProgressBar(total, stream) as bar: bar.update(done)`` — redraws at most 10 times a second."""

    def __init__(self, total: int, stream: TextIO, label: str = "", unit: str = "bytes") -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.label = label
        self.unit = unit
        self.enabled = stream.isatty()
        self._started = time.monotonic()
        self._last_draw = 0.0

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.enabled:
            self.update(self.total, force=True)
            self.stream.write("\n")
            self.stream.flush()

    def update(self, done: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        fraction = min(done / self.total, 1.0)
        width = 30
        filled = int(fraction * width)
        elapsed = now - self._started
        eta = (elapsed / fraction - elapsed) if fraction > 0 else 0.0
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%}"
            f"  {elapsed:5.1f}s elapsed, ~{eta:4.0f}s left "
        )
        self.stream.flush()
