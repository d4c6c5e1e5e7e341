"""The per-leader budget summary an operator reads: B_u, E_u, r_u, our exposure, headroom, counts.

The formulas for headroom, utilization and "our exposure just after a decision" are defined here once;
the replay summary, the projections (:mod:`projections.rows`) and the API all call them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from models.book import exposure_for_sizing, total_cost_basis
from models.events import CopyAttemptWire, ExposureStatus
from models.sizing import copy_rate
from models.state import PartitionState


def budget_headroom_micros(budget_micros: int, our_exposure_micros: int, hard: bool) -> int | None:
    """B_u − our exposure while the HARD budget applies, else None (negative when marks moved past B_u)."""
    return budget_micros - our_exposure_micros if hard else None


def budget_utilization(our_exposure_micros: int, budget_micros: int) -> float | None:
    """Our exposure / B_u as a fraction; None when B_u is 0."""
    return our_exposure_micros / budget_micros if budget_micros > 0 else None


def exposure_after(current_micros: int, target_micros: int, executed: bool, reducing: bool) -> int:
    """Our exposure to the leader just after a decision made at `current_micros`.

    An approximation from the attempt alone: an EXECUTE adds its target notional (a reducing one removes
    it, floored at 0); a SKIP changes nothing. The worker's exact figure also re-marks held assets at later
    prices, which an attempt does not carry.
    """
    if not executed:
        return current_micros
    if reducing:
        return max(0, current_micros - target_micros)
    return current_micros + target_micros


@dataclass(slots=True)
class LeaderTally:
    """Counts over one leader's attempts."""

    executed: int = 0
    skipped: int = 0
    trades: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)

    def observe(self, attempt: CopyAttemptWire) -> None:
        self.trades += attempt["bufferedTradeCount"]
        if attempt["decision"] == "EXECUTE":
            self.executed += 1
        else:
            self.skipped += 1
            self.skip_reasons.update(attempt["reasonCodes"])


@dataclass(frozen=True, slots=True)
class LeaderSummary:
    """One row of the budget summary (money in micros; rate and utilization as fractions)."""

    leader_id: str
    label: str
    sizing_mode: str
    budgeted_dynamic_active: bool
    budget_enforcement: str
    budget_micros: int
    leader_exposure_micros: int | None
    leader_exposure_status: ExposureStatus
    r_u: float
    our_exposure_micros: int
    """What the HARD check counts: our marked exposure plus the open BUY reservations (SPEC 13.3)."""
    headroom_micros: int | None
    """B_u − our exposure, when HARD enforcement applies."""
    utilization: float | None
    """our exposure / B_u, when B_u > 0."""
    executed: int
    skipped: int
    trades: int
    top_skip_reasons: tuple[tuple[str, int], ...]
    realized_pnl_micros: int = 0
    """Realized PnL of what we copied from the leader (SPEC 13.6)."""
    unrealized_pnl_micros: int = 0
    """Our exposure − cost basis."""
    open_orders: int = 0
    reserved_micros: int = 0
    """Σ BUY reservations of the open orders (SPEC 13.3)."""


def summarize(state: PartitionState, tallies: dict[str, LeaderTally], top: int = 3) -> list[LeaderSummary]:
    """Summary rows for every leader the partition has seen, sorted by leader id, as of its clock."""
    rows = []
    for leader_id in sorted(state.leaders):
        leader = state.leaders[leader_id]
        cfg = state.config.for_leader(leader_id)
        shown, used, status = exposure_for_sizing(leader, state.clock_ms, cfg)
        tally = tallies.get(leader_id, LeaderTally())
        budget = cfg.budget_usdc_micros
        counted = leader.exposure_micros + leader.reserved_buy_micros  # what HARD counts (SPEC 13.3 point 2)
        rows.append(
            LeaderSummary(
                leader_id=leader_id,
                label=cfg.label or leader_id,
                sizing_mode=cfg.sizing_mode,
                budgeted_dynamic_active=cfg.budgeted_dynamic_active,
                budget_enforcement=cfg.budget_enforcement,
                budget_micros=budget,
                leader_exposure_micros=shown,
                leader_exposure_status=status,
                r_u=copy_rate(cfg, used),
                our_exposure_micros=counted,
                headroom_micros=budget_headroom_micros(budget, counted, cfg.hard_budget),
                utilization=budget_utilization(counted, budget),
                executed=tally.executed,
                skipped=tally.skipped,
                trades=tally.trades,
                top_skip_reasons=tuple(tally.skip_reasons.most_common(top)),
                realized_pnl_micros=leader.realized_pnl_micros,
                unrealized_pnl_micros=leader.exposure_micros - total_cost_basis(leader),
                open_orders=sum(1 for order in leader.orders.values() if order.open),
                reserved_micros=leader.reserved_buy_micros,
            )
        )
    return rows
