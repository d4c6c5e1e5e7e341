"""Sizing a group (SPEC 5): the raw target (fixed rate or Budgeted Dynamic) and the trade clamps."""

from __future__ import annotations

from typing import NamedTuple

from models.config import EffectiveConfig
from models.events import ExposureStatus
from models.state import Snapshot
from models.units import BPS, apply_bps


class LeaderExposure(NamedTuple):
    """E_u as seen at decision time: the snapshot value shown, the value sizing uses, and its status."""

    shown_micros: int | None
    """The snapshot's exposure even when stale; None when there is no snapshot."""
    used_micros: int
    """0 when missing or stale (Budgeted Dynamic then sizes at r_max)."""
    status: ExposureStatus


def leader_exposure(snapshot: Snapshot | None, clock_ms: int, cfg: EffectiveConfig) -> LeaderExposure:
    """E_u at `clock_ms`: stale iff clock − bucketTimeMs > system.leaderExposureMaxAgeMs."""
    if snapshot is None:
        return LeaderExposure(None, 0, "missing")
    if clock_ms - snapshot.bucket_time_ms > cfg.leader_exposure_max_age_ms:
        return LeaderExposure(snapshot.exposure_micros, 0, "stale")
    return LeaderExposure(snapshot.exposure_micros, snapshot.exposure_micros, "fresh")


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


class RawTarget(NamedTuple):
    """The copy notional before the trade clamps, and which r_u bound applied."""

    micros: int
    clamped_to_r_min: bool = False
    clamped_to_r_max: bool = False


def raw_target(cfg: EffectiveConfig, leader_notional_micros: int, exposure_micros: int) -> RawTarget:
    """Raw copy target of a non-BUFFER group (or of one trade, for buffering) from the leader notional."""
    n = leader_notional_micros
    if not cfg.budgeted_dynamic_active:
        return RawTarget(apply_bps(n, cfg.copy_pct_notional_bps))
    max_target = apply_bps(n, cfg.budget_r_max_bps)
    if exposure_micros <= 0:
        return RawTarget(max_target, clamped_to_r_max=True)
    raw = n * cfg.budget_usdc_micros // exposure_micros
    min_target = apply_bps(n, cfg.budget_r_min_bps)
    if raw < min_target:
        return RawTarget(min_target, clamped_to_r_min=True)
    if raw > max_target:
        return RawTarget(max_target, clamped_to_r_max=True)
    return RawTarget(raw)


class ClampedTarget(NamedTuple):
    """The target after the min / max / bankroll clamps (SPEC 5.2)."""

    micros: int
    clamped_to_min: bool
    clamped_to_max: bool
    clamped_by_bankroll: bool


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
    return ClampedTarget(target, to_min, to_max, by_bankroll)


def effective_rate_bps(raw_micros: int, leader_notional_micros: int) -> int:
    """floor(raw × 10,000 / leader notional), 0 when the leader notional is 0."""
    if leader_notional_micros <= 0:
        return 0
    return raw_micros * BPS // leader_notional_micros
