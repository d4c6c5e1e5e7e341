"""Sizing a group (SPEC 5): the raw target (fixed rate or Budgeted Dynamic) and the trade clamps."""

from __future__ import annotations

from models.config import EffectiveConfig
from models.events import ExposureStatus
from models.state import Snapshot
from models.units import BPS, apply_bps

LeaderExposure = tuple[int | None, int, ExposureStatus]
"""E_u at decision time: (the snapshot's exposure, shown even when stale, None when missing;
the exposure sizing uses, 0 when missing or stale; the status). Plain tuples: this is the hot path."""


def leader_exposure(snapshot: Snapshot | None, clock_ms: int, cfg: EffectiveConfig) -> LeaderExposure:
    """E_u at `clock_ms`: stale iff clock − bucketTimeMs > system.leaderExposureMaxAgeMs."""
    if snapshot is None:
        return None, 0, "missing"
    if clock_ms - snapshot.bucket_time_ms > cfg.leader_exposure_max_age_ms:
        return snapshot.exposure_micros, 0, "stale"
    return snapshot.exposure_micros, snapshot.exposure_micros, "fresh"


def copy_rate(cfg: EffectiveConfig, exposure_micros: int) -> float:
    """r_u for display: clamp(B/E, rMin, rMax) when Budgeted Dynamic is active, else the fixed rate."""
    if not cfg.budgeted_dynamic_active:
        return cfg.copy_pct_notional_bps / BPS
    if exposure_micros <= 0:
        return cfg.budget_r_max_bps / BPS
    rate = cfg.budget_usdc_micros / exposure_micros
    if rate < cfg.budget_r_min_bps / BPS:
        return cfg.budget_r_min_bps / BPS
    if rate > cfg.budget_r_max_bps / BPS:
        return cfg.budget_r_max_bps / BPS
    return rate


RawTarget = tuple[int, bool, bool]
"""(copy notional before the trade clamps, clampedToRMin, clampedToRMax)."""


def raw_target(cfg: EffectiveConfig, leader_notional_micros: int, exposure_micros: int) -> RawTarget:
    """Raw copy target of a non-BUFFER group (or of one trade, for buffering) from the leader notional."""
    n = leader_notional_micros
    if not cfg.budgeted_dynamic_active:
        return n * cfg.copy_pct_notional_bps // BPS, False, False
    max_target = n * cfg.budget_r_max_bps // BPS
    if exposure_micros <= 0:
        return max_target, False, True
    raw = n * cfg.budget_usdc_micros // exposure_micros
    min_target = n * cfg.budget_r_min_bps // BPS
    if raw < min_target:
        return min_target, True, False
    if raw > max_target:
        return max_target, False, True
    return raw, False, False


ClampedTarget = tuple[int, bool, bool, bool]
"""(target after the trade clamps, clampedToMin, clampedToMax, clampedByBankroll) (SPEC 5.2)."""


def clamp_target(cfg: EffectiveConfig, raw_micros: int, equity_micros: int) -> ClampedTarget:
    """Apply, in order: raise to min, cut to max, cut to the bankroll share (min wins over bankroll)."""
    target = raw_micros
    to_min = to_max = by_bankroll = False
    if target < cfg.min_trade_notional_micros:
        target, to_min = cfg.min_trade_notional_micros, True
    if target > cfg.max_trade_notional_micros:
        target, to_max = cfg.max_trade_notional_micros, True
    bankroll_max = apply_bps(equity_micros, cfg.max_trade_bankroll_bps)
    if bankroll_max > 0 and target > bankroll_max:
        target, by_bankroll = bankroll_max, True
        if target < cfg.min_trade_notional_micros:
            target, to_min, by_bankroll = cfg.min_trade_notional_micros, True, False
    return target, to_min, to_max, by_bankroll


def effective_rate_bps(raw_micros: int, leader_notional_micros: int) -> int:
    """floor(raw × 10,000 / leader notional), 0 when the leader notional is 0."""
    if leader_notional_micros <= 0:
        return 0
    return raw_micros * BPS // leader_notional_micros
