"""Event factories and a tiny driver for unit tests: build wire events with sensible defaults."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from pydantic import BaseModel

from models.engine import InputEvent, finish, process
from models.events import (
    ConfigChange,
    ConfigRejected,
    ConfigWarning,
    CopyAttemptWire,
    ExecutionReport,
    LeaderTrade,
    MarketResolved,
    Output,
    PortfolioSnapshot,
    Tick,
)
from models.state import PartitionState

P = ParamSpec("P")
M = TypeVar("M", bound=BaseModel)

T0 = 1_000_000  # a round start time (ms); 1970-01-01T00:16:40.000Z
USD = 1_000_000
_ids = itertools.count(1)


def trade_wire(
    leader: str = "u1",
    *,
    at: int = T0,
    side: str = "BUY",
    notional: int = 100 * USD,
    price: int = 500_000,
    asset: str = "a1",
    market: str | None = "m1",
    trade_id: str | None = None,
    shares: int | None = None,
) -> dict[str, Any]:
    """A leader trade as its JSON object; shares default to notional / price so the VWAP equals `price`."""
    return {
        "kind": "leaderTrade",
        "tradeId": trade_id or f"t{next(_ids)}",
        "followedUserId": leader,
        "assetId": asset,
        "marketId": market,
        "side": side,
        "priceMicros": price,
        "shareMicros": shares if shares is not None else max(1, notional * USD // price),
        "notionalMicros": notional,
        "detectTimeMs": at,
    }


def validated(model: type[M], wire: Callable[P, dict[str, Any]]) -> Callable[P, M]:
    """A factory of `model` instances that takes the arguments of the wire-dict factory `wire`."""

    def build(*args: P.args, **kwargs: P.kwargs) -> M:
        return model.model_validate(wire(*args, **kwargs))

    return build


trade = validated(LeaderTrade, trade_wire)
"""A leader trade (the arguments of :func:`trade_wire`)."""


def shadow(leader: str = "u1", exposure: int = 100_000 * USD, at: int = T0) -> PortfolioSnapshot:
    """A SHADOW_USER snapshot: the leader's exposure E_u as of `at`."""
    return PortfolioSnapshot.model_validate(
        {
            "kind": "portfolioSnapshot",
            "portfolioScope": "SHADOW_USER",
            "followedUserId": leader,
            "bucketTimeMs": at,
            "exposureMicros": exposure,
            "equityMicros": None,
            "cashMicros": None,
        }
    )


def equity(equity_micros: int | None, at: int = T0) -> PortfolioSnapshot:
    """A whole EXEC_GLOBAL snapshot carrying our equity."""
    return PortfolioSnapshot.model_validate(
        {
            "kind": "portfolioSnapshot",
            "portfolioScope": "EXEC_GLOBAL",
            "followedUserId": None,
            "bucketTimeMs": at,
            "exposureMicros": 0,
            "equityMicros": equity_micros,
            "cashMicros": None,
        }
    )


def change_wire(
    change_id: str | None = None, scope: str = "GLOBAL", leader: str | None = None, /, **sections: Any
) -> dict[str, Any]:
    """A config change as a wire dict (a tape line), e.g. ``change_wire("c1", "USER", "u1", sizing={...})``;
    without `change_id` it gets a fresh one. (Positional-only, so a ``leader=`` section stays a section.)"""
    return {
        "kind": "configChange",
        "changeId": change_id or f"c{next(_ids)}",
        "scope": scope,
        "followedUserId": leader,
        "changedAtMs": 0,
        **sections,
    }


def global_change(change_id: str | None = None, **sections: Any) -> ConfigChange:
    """A GLOBAL config change with the given sections, e.g. ``global_change(sizing={...})``."""
    return ConfigChange.model_validate(change_wire(change_id, "GLOBAL", None, **sections))


def user_change(leader_id: str, /, change_id: str | None = None, **sections: Any) -> ConfigChange:
    """A USER config change for `leader`."""
    return ConfigChange.model_validate(change_wire(change_id, "USER", leader_id, **sections))


def tick(now: int) -> Tick:
    return Tick(kind="tick", now_ms=now)


def resolution(
    asset: str = "a1", payout: int = USD, market: str | None = "m1", at: int = T0
) -> MarketResolved:
    """A market resolution: each share of `asset` pays `payout` micros."""
    return MarketResolved(
        kind="marketResolved", asset_id=asset, market_id=market, payout_micros=payout, resolved_at_ms=at
    )


def report(
    attempt_id: str,
    status: str = "FILLED",
    shares: int = 0,
    notional: int = 0,
    *,
    leader: str = "u1",
    report_id: str | None = None,
) -> ExecutionReport:
    """An execution report for `attempt_id`: cumulative `shares` filled for `notional` USDC micros."""
    return ExecutionReport.model_validate(
        {
            "kind": "executionReport",
            "reportId": report_id or f"r{next(_ids)}",
            "attemptId": attempt_id,
            "followedUserId": leader,
            "status": status,
            "filledShareMicros": shares,
            "filledNotionalMicros": notional,
            "reportedAtMs": 0,
        }
    )


BUDGETED: dict[str, Any] = {"budgetedDynamicEnabled": True, "sizingMode": "budgetedDynamic"}
"""GLOBAL sizing keys that switch Budgeted Dynamic on for every leader."""


class Driver:
    """Feeds events to one partition and collects what comes out.

    The tests of SPEC 1-12 look at attempts and config reports only: unless `books` is true, the
    leaderBook outputs (produced at every bookIntervalMs boundary, SPEC 13.5) are left out; unless
    `orders` is true, so are the orderUpdated outputs (every change of an order in reports mode,
    tests/unit/test_order_updates.py).
    """

    def __init__(self, *events: InputEvent, books: bool = False, orders: bool = False) -> None:
        self.state = PartitionState()
        self.outputs: list[Output] = []
        self.books = books
        self.orders = orders
        self.feed(*events)

    def _keep(self, outputs: list[Output]) -> list[Output]:
        left_out = set()
        if not self.books:
            left_out.add("leaderBook")
        if not self.orders:
            left_out.add("orderUpdated")
        return [o for o in outputs if isinstance(o, dict) or o.kind not in left_out]

    def feed(self, *events: InputEvent) -> list[Output]:
        new: list[Output] = []
        for event in events:
            new.extend(process(self.state, event))
        new = self._keep(new)
        self.outputs.extend(new)
        return new

    def finish(self) -> list[Output]:
        new = self._keep(finish(self.state))
        self.outputs.extend(new)
        return new

    @property
    def attempts(self) -> list[CopyAttemptWire]:
        return attempts_of(self.outputs)

    @property
    def rejections(self) -> list[ConfigRejected]:
        return [o for o in self.outputs if isinstance(o, ConfigRejected)]

    @property
    def warnings(self) -> list[ConfigWarning]:
        return [o for o in self.outputs if isinstance(o, ConfigWarning)]


def attempts_of(outputs: Iterable[Output]) -> list[CopyAttemptWire]:
    return [o for o in outputs if isinstance(o, dict)]


def run(*events: InputEvent) -> list[CopyAttemptWire]:
    """Process `events`, then the end-of-input flush; return every attempt."""
    driver = Driver(*events)
    driver.finish()
    return driver.attempts


def restarted_run_changes_nothing(events: list[InputEvent], cut: int) -> None:
    """Assert that saving a partition after `cut` events with the live worker's own state records
    (streams/worker/records.py) and restoring it changes no output and no final state."""
    from models.codec import leader_to_json, partition_to_json
    from streams.serde import encode
    from streams.worker.records import SavedPartition, batch_records, restore

    straight = PartitionState()
    expected = [o for e in events for o in process(straight, e)] + finish(straight)
    state = PartitionState(journaling=True)
    outputs = [o for e in events[:cut] for o in process(state, e)]
    records = batch_records(0, SavedPartition(state, 41), set(state.leaders))
    restored = restore(0, {key: value for key, value in records if value is not None}.get)
    assert restored.offset == 41
    state = restored.state
    outputs += [o for e in events[cut:] for o in process(state, e)] + finish(state)

    def wire(values: list[Any]) -> list[Any]:
        return [v if isinstance(v, dict) else encode(v) for v in values]

    assert wire(outputs) == wire(expected)
    assert partition_to_json(state, 0) == partition_to_json(straight, 0)
    assert {u: leader_to_json(x) for u, x in state.leaders.items()} == {
        u: leader_to_json(x) for u, x in straight.leaders.items()
    }
