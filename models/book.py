"""Our book attributed to a leader: holdings, marks, cost basis and PnL, reservations, the leader's own
shadow book, and the ``leaderBook`` output (SPEC 7, 13.3-13.6).

Everything is integer micros. Exposure sums are kept per asset so a new mark or fill costs O(1).
"""

from __future__ import annotations

from models.config import EffectiveConfig
from models.events import LeaderBookWire
from models.sizing import LeaderExposure, leader_exposure
from models.state import LeaderState, Order, PartitionState
from models.units import MICROS, notional

# --- marks and holdings (SPEC 7, 12.5) --------------------------------------------------------------


def set_mark(leader: LeaderState, asset_id: str, price_micros: int) -> None:
    """Mark an asset at a new price, revaluing our holding of it (and so the leader's exposure)."""
    marks = leader.mark_price_micros
    held = leader.held_share_micros.get(asset_id)
    if held:
        if marks.get(asset_id) != price_micros:
            leader.book_changed = True
        part = held * price_micros // MICROS
        leader.exposure_micros += part - leader.exposure_part_micros.get(asset_id, 0)
        leader.exposure_part_micros[asset_id] = part
    marks[asset_id] = price_micros
    shadow_part(leader, asset_id)


def set_holding(leader: LeaderState, asset_id: str, held_share_micros: int, price_micros: int) -> None:
    """Record our new holding of an asset after a fill at `price_micros` (0: keep the old mark)."""
    leader.held_share_micros[asset_id] = held_share_micros
    if price_micros > 0:
        leader.mark_price_micros[asset_id] = price_micros
        shadow_part(leader, asset_id)
    part = notional(held_share_micros, leader.mark_price_micros.get(asset_id, 0))
    leader.exposure_micros += part - leader.exposure_part_micros.get(asset_id, 0)
    leader.exposure_part_micros[asset_id] = part
    leader.book_changed = True


# --- cost basis and PnL (SPEC 13.6) -------------------------------------------------------------------


def buy_fill(leader: LeaderState, asset_id: str, shares: int, paid_micros: int, price_micros: int) -> None:
    """We bought `shares` for `paid_micros`: holding and cost basis grow."""
    held = leader.held_share_micros.get(asset_id, 0)
    leader.cost_basis_micros[asset_id] = leader.cost_basis_micros.get(asset_id, 0) + paid_micros
    set_holding(leader, asset_id, held + shares, price_micros)


def sell_fill(
    leader: LeaderState, asset_id: str, shares: int, received_micros: int, price_micros: int
) -> int:
    """We sold `shares` (at most what is held) for `received_micros`; returns the cost basis removed.

    removed = floor(cost × s / h); realized += received − removed; a position at 0 shares costs 0.
    """
    held = leader.held_share_micros.get(asset_id, 0)
    cost = leader.cost_basis_micros.get(asset_id, 0)
    sold = min(shares, held)
    removed = cost if sold >= held else cost * sold // held
    leader.cost_basis_micros[asset_id] = cost - removed
    leader.realized_pnl_micros += received_micros - removed
    set_holding(leader, asset_id, held - sold, price_micros)
    return removed


def total_cost_basis(leader: LeaderState) -> int:
    return sum(leader.cost_basis_micros.values())


# --- reservations (SPEC 13.3.2) ----------------------------------------------------------------------


def release(leader: LeaderState, order: Order) -> None:
    """Take the order's current reservation out of the leader's sums (before changing the order)."""
    amount = order.reserved()
    if not amount:
        return
    if order.side == "BUY":
        leader.reserved_buy_micros -= amount
    else:
        sells = leader.reserved_sell_share_micros
        sells[order.asset_id] -= amount
        if not sells[order.asset_id]:
            del sells[order.asset_id]


def reserve(leader: LeaderState, order: Order) -> None:
    """Add the order's current reservation to the leader's sums (after changing the order)."""
    amount = order.reserved()
    if not amount:
        return
    if order.side == "BUY":
        leader.reserved_buy_micros += amount
    else:
        sells = leader.reserved_sell_share_micros
        sells[order.asset_id] = sells.get(order.asset_id, 0) + amount


# --- the leader's own book (SPEC 13.4) --------------------------------------------------------------


def shadow_trade(leader: LeaderState, asset_id: str, side: str, shares: int) -> None:
    """The leader's accepted trade moves its shadow book (never below 0: the venue cannot short)."""
    book = leader.shadow_share_micros
    held = book.get(asset_id, 0)
    book[asset_id] = held + shares if side == "BUY" else max(0, held - shares)
    shadow_part(leader, asset_id)


def shadow_part(leader: LeaderState, asset_id: str) -> None:
    """Bring E_shadow(u) up to date after the asset's shadow shares or mark changed: O(1), not a sum over
    the leader's assets on every trade. Every change of ``shadow_share_micros`` or ``mark_price_micros``
    calls it (tests/unit/test_venue_properties.py checks the sum after every event)."""
    part = leader.shadow_share_micros.get(asset_id, 0) * leader.mark_price_micros.get(asset_id, 0) // MICROS
    parts = leader.shadow_part_micros
    leader.shadow_exposure_micros += part - parts.get(asset_id, 0)
    parts[asset_id] = part


def recount_shadow(leader: LeaderState) -> None:
    """Recompute E_shadow(u) from the shadow book and the marks (after a restore)."""
    leader.shadow_part_micros.clear()
    leader.shadow_exposure_micros = 0
    for asset_id in leader.shadow_share_micros:
        shadow_part(leader, asset_id)


def shadow_exposure(leader: LeaderState) -> int:
    """E_shadow(u) = Σ over assets floor(shares × mark / 10^6)."""
    return leader.shadow_exposure_micros


def exposure_for_sizing(leader: LeaderState, clock_ms: int, cfg: EffectiveConfig) -> LeaderExposure:
    """E_u as ``sizing.leaderExposureSource`` chooses it: the snapshot, or the shadow book ("derived")."""
    source = cfg.leader_exposure_source
    if source == "snapshot":
        return leader_exposure(leader.shadow, clock_ms, cfg)
    if source == "snapshotElseShadowBook":
        found = leader_exposure(leader.shadow, clock_ms, cfg)
        if found[2] == "fresh":
            return found
    derived = shadow_exposure(leader)
    return derived, derived, "derived"


# --- the leaderBook output (SPEC 13.5, 13.8.2) ---------------------------------------------------------


def leader_book(state: PartitionState, leader: LeaderState) -> LeaderBookWire:
    """The leader's book as of the partition clock; marks it as the last book shown."""
    shown, _, status = exposure_for_sizing(leader, state.clock_ms, state.config.for_leader(leader.leader_id))
    leader.book_changed = False
    leader.last_book_exposure = (shown, status)
    cost = total_cost_basis(leader)
    marks, costs = leader.mark_price_micros, leader.cost_basis_micros
    # The wire dict of `LeaderBook`, field for field in its order (the JSON keys follow it).
    return LeaderBookWire(
        {
            "kind": "leaderBook",
            "followedUserId": leader.leader_id,
            "asOfMs": state.clock_ms,
            "exposureMicros": leader.exposure_micros,
            "reservedMicros": leader.reserved_buy_micros,
            "costBasisMicros": cost,
            "realizedPnlMicros": leader.realized_pnl_micros,
            "unrealizedPnlMicros": leader.exposure_micros - cost,
            "leaderExposureMicros": shown,
            "leaderExposureStatus": status,
            "positions": [
                {
                    "assetId": asset,
                    "shareMicros": held,
                    "markPriceMicros": marks.get(asset, 0),
                    "costBasisMicros": costs.get(asset, 0),
                }
                for asset, held in sorted(leader.held_share_micros.items())
                if held > 0
            ],
            "configVersion": state.config.version,
        }
    )


def changed_books(state: PartitionState) -> list[LeaderBookWire]:
    """A leaderBook for each leader whose book changed since its last one, in leader-id order."""
    books = []
    for leader_id in sorted(state.leaders):
        leader = state.leaders[leader_id]
        if not leader.has_book:
            continue
        if not leader.book_changed:
            shown, _, status = exposure_for_sizing(leader, state.clock_ms, state.config.for_leader(leader_id))
            if leader.last_book_exposure == (shown, status):
                continue
        books.append(leader_book(state, leader))
    return books
