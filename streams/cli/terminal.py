"""Readable tables for people (terminal output); money in USD, rates in %."""

from __future__ import annotations

from collections.abc import Sequence

from models.summary import LeaderSummary
from models.units import MICROS


def usd(micros: int | None) -> str:
    """Micros as dollars, e.g. ``$1,234.56``; a dash for unknown."""
    if micros is None:
        return "—"
    sign = "-" if micros < 0 else ""
    return f"{sign}${abs(micros) / MICROS:,.2f}"


def pct(fraction: float | None, digits: int = 1) -> str:
    """A fraction as a percentage; a dash for unknown."""
    return "—" if fraction is None else f"{fraction * 100:.{digits}f}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A plain-text table with aligned columns (numbers right-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        cols = (c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True))
        return "  ".join(cols).rstrip()

    rule = "  ".join("─" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def leader_summary_table(rows: Sequence[LeaderSummary]) -> str:
    """The per-leader budget summary as a terminal table."""
    headers = [
        "leader",
        "mode",
        "B_u",
        "E_u",
        "r_u",
        "our exposure",
        "headroom",
        "util",
        "exec",
        "skip",
        "top skip reasons",
    ]
    right = [False, False, True, True, True, True, True, True, True, True, False]
    body = []
    for r in rows:
        mode = ("dynamic/" + r.budget_enforcement) if r.budgeted_dynamic_active else "fixed"
        exposure = usd(r.leader_exposure_micros)
        if r.leader_exposure_status != "fresh":
            exposure += f" ({r.leader_exposure_status})"
        reasons = ", ".join(f"{code} {n:,}" for code, n in r.top_skip_reasons) or "—"
        body.append(
            [
                r.label if r.label == r.leader_id else f"{r.label} ({r.leader_id})",
                mode,
                usd(r.budget_micros),
                exposure,
                pct(r.r_u, 3),
                usd(r.our_exposure_micros),
                usd(r.headroom_micros),
                pct(r.utilization),
                f"{r.executed:,}",
                f"{r.skipped:,}",
                reasons,
            ]
        )
    return table(headers, body, right)
