"""What the two property suites (test_properties: SPEC 1-12, test_venue_properties: SPEC 13) share: the
hypothesis settings, config-change and trade strategies, and the conservation and HARD-budget checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from models.engine import InputEvent
from models.events import CopyAttempt, LeaderTrade
from models.units import MICROS, notional
from tests.factories import USD, trade

LEADERS = ("u1", "u2", "u3")
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sizing_keys(
    *, budget_max: int, enforcement: Sequence[str], **more: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """A random subset of the sizing keys, budgets up to `budget_max`, enforcement drawn from `enforcement`
    (repeat a value to weight it), plus the keys of `more`."""
    return st.fixed_dictionaries(
        {},
        optional={
            "budgetedDynamicEnabled": st.booleans(),
            "sizingMode": st.sampled_from(["fixedRate", "budgetedDynamic"]),
            "budgetUsdcMicros": st.integers(1, budget_max),
            "budgetEnforcement": st.sampled_from(enforcement),
            "budgetRMaxBps": st.integers(100, 20_000),
            "minTradeNotionalMicros": st.integers(0, 5 * USD),
            **more,
        },
    )


def draw_trade(draw: st.DrawFn, clock: int, assets: Sequence[str]) -> LeaderTrade:
    """A trade of a random leader of :data:`LEADERS` and asset of `assets` at `clock`, detected late by up
    to 600 ms half the time."""
    price = draw(st.integers(1, MICROS))
    shares = draw(st.integers(1, 2_000 * USD))
    late = draw(st.integers(0, 600)) if draw(st.booleans()) else 0
    return trade(
        draw(st.sampled_from(LEADERS)),
        at=max(0, clock - late),
        side=draw(st.sampled_from(["BUY", "BUY", "SELL"])),
        price=price,
        shares=shares,
        notional=notional(shares, price),
        asset=draw(st.sampled_from(assets)),
    )


def assert_conservation(events: list[InputEvent], attempts: Sequence[Any]) -> None:
    """Conservation (SPEC 5): each distinct (leader, tradeId) is in exactly one attempt, attemptIds are
    unique, and every attempt is a valid ``copyAttempt``."""
    accepted = {(e.followed_user_id, e.trade_id) for e in events if isinstance(e, LeaderTrade)}
    counted = Counter((a["followedUserId"], tid) for a in attempts for tid in a["tradeIds"])
    assert set(counted) == accepted
    assert all(n == 1 for n in counted.values())
    assert len({a["attemptId"] for a in attempts}) == len(attempts)
    for a in attempts:
        CopyAttempt.model_validate(a)


def hard_budget_binds(attempt: Mapping[str, Any]) -> bool:
    """A non-reducing EXECUTE while Budgeted Dynamic is active with HARD enforcement (SPEC 7)."""
    sizing = attempt["sizing"]
    hard = sizing["budgetedDynamicActive"] and sizing["budgetEnforcement"] == "hard"
    return bool(attempt["decision"] == "EXECUTE" and hard and not attempt["budget"]["reducing"])
