"""What people read in a terminal: aligned tables, the budget summary, a progress bar; money in USD.

The number formats themselves (:func:`models.units.usd`, :func:`models.units.pct`) are shared with the
dashboard and live in :mod:`models.units`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import TextIO

from models.summary import LeaderSummary
from models.units import pct, usd

__all__ = ["ProgressBar", "leader_summary_table", "pct", "table", "usd"]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A plain-text table with aligned columns (numbers right-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        cols = (c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True))
        return "  ".join(cols).rstrip()

    rule = "  ".join("─" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


SUMMARY_HEADERS = (
    "leader",
    "mode",
    "B_u",
    "E_u",
    "r_u",
    "our exposure",
    "headroom",
    "util",
    "realized",
    "unrealized",
    "orders",
    "reserved",
    "exec",
    "skip",
    "top skip reasons",
)
SUMMARY_RIGHT = (False, False, *(True,) * 12, False)


def _summary_row(r: LeaderSummary) -> list[str]:
    mode = ("dynamic/" + r.budget_enforcement) if r.budgeted_dynamic_active else "fixed"
    exposure = usd(r.leader_exposure_micros)
    if r.leader_exposure_status != "fresh":
        exposure += f" ({r.leader_exposure_status})"
    reasons = ", ".join(f"{code} {n:,}" for code, n in r.top_skip_reasons) or "—"
    return [
        r.label if r.label == r.leader_id else f"{r.label} ({r.leader_id})",
        mode,
        usd(r.budget_micros),
        exposure,
        pct(r.r_u, 3),
        usd(r.our_exposure_micros),
        usd(r.headroom_micros),
        pct(r.utilization),
        usd(r.realized_pnl_micros),
        usd(r.unrealized_pnl_micros),
        f"{r.open_orders:,}",
        usd(r.reserved_micros),
        f"{r.executed:,}",
        f"{r.skipped:,}",
        reasons,
    ]


def leader_summary_table(rows: Sequence[LeaderSummary]) -> str:
    """The per-leader budget summary as a terminal table."""
    return table(SUMMARY_HEADERS, [_summary_row(r) for r in rows], SUMMARY_RIGHT)


class ProgressBar:
    """``with ProgressBar(total, stream) as bar: bar.update(done)`` — redraws at most 10 times a second.

    Drawn on a terminal only (never into pipes or files).
    """

    def __init__(self, total: int, stream: TextIO, label: str = "") -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.label = label
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
