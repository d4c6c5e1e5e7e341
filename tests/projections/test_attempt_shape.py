"""The copy attempt's shape is written in several places; this one test pins them all equal (issue 7).

The places: the pydantic contract (``models.events.CopyAttempt``), the core's TypedDict
(``CopyAttemptWire``), the dict the decision core emits, the ``copy_attempts`` row
(``projections.rows.AttemptRow`` and ``attempt_row``) and the SQL table (``projections.store``; its columns
are derived from the row dataclasses). A field added to one of them and not the others fails here.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, get_type_hints

from pydantic import BaseModel

from models.events import CopyAttempt, CopyAttemptWire
from projections.rows import AttemptRow, ConfigHistoryRow, LeaderBudgetRow, SnapshotRow, attempt_row
from projections.store import config_history, copy_attempts, latest_snapshots, leader_budget
from tests.factories import run, trade

ROW_SOURCES: dict[str, tuple[str, ...]] = {
    "attempt_id": ("attemptId",),
    "leader_id": ("followedUserId",),
    "group_key": ("groupKey",),
    "asset_id": ("assetId",),
    "market_id": ("marketId",),
    "side": ("side",),
    "source_type": ("sourceType",),
    "decision": ("decision",),
    "trade_count": ("bufferedTradeCount",),
    "their_notional_micros": ("theirNotionalMicros",),
    "their_reference_price_micros": ("theirReferencePriceMicros",),
    "raw_target_micros": ("rawTargetMicros",),
    "target_notional_micros": ("targetNotionalMicros",),
    "target_share_micros": ("targetShareMicros",),
    "decided_at_ms": ("decidedAtMs",),
    "sizing_mode": ("sizing", "sizingMode"),
    "budgeted_dynamic_active": ("sizing", "budgetedDynamicActive"),
    "budget_enforcement": ("sizing", "budgetEnforcement"),
    "budget_usdc_micros": ("sizing", "budgetUsdcMicros"),
    "leader_exposure_micros": ("sizing", "leaderExposureMicros"),
    "leader_exposure_status": ("sizing", "leaderExposureStatus"),
    "r_u": ("sizing", "rU"),
    "effective_rate_bps": ("sizing", "effectiveRateBps"),
    "clamped_to_r_min": ("sizing", "clampedToRMin"),
    "clamped_to_r_max": ("sizing", "clampedToRMax"),
    "clamped_to_min": ("sizing", "clampedToMin"),
    "clamped_to_max": ("sizing", "clampedToMax"),
    "clamped_by_bankroll": ("sizing", "clampedByBankroll"),
    "equity_micros": ("sizing", "equityMicros"),
    "current_exposure_micros": ("budget", "currentExposureMicros"),
    "headroom_micros": ("budget", "headroomMicros"),
    "capped": ("budget", "capped"),
    "reducing": ("budget", "reducing"),
    "reserved_micros": ("budget", "reservedMicros"),
    "budgeted_dynamic_enabled": ("sizing", "budgetedDynamicEnabled"),
    "config_version": ("configVersion",),
}
"""Each ``copy_attempts`` column copied from the attempt, and the wire field it is copied from."""
ROW_ONLY = {
    "reason": "the first of reasonCodes",
    "attempt_json": "",
    "source_partition": "",
    "source_offset": "",
}
NOT_COLUMNS = {
    ("kind",): "always copyAttempt",
    ("tradeIds",): "in attempt_json",
    ("reasonCodes",): "its first code is the reason column",
}
"""Wire fields that are deliberately not a column of their own."""


def model_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    for name, info in model.model_fields.items():
        path = (*prefix, info.alias or name)
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            paths |= model_paths(nested, path)
        else:
            paths.add(path)
    return paths


def typed_dict_paths(td: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    for key, hint in get_type_hints(td).items():
        if hasattr(hint, "__required_keys__"):
            paths |= typed_dict_paths(hint, (*prefix, key))
        else:
            paths.add((*prefix, key))
    return paths


def dict_paths(value: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    for key, item in value.items():
        paths |= dict_paths(item, (*prefix, key)) if isinstance(item, dict) else {(*prefix, key)}
    return paths


def at(wire: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        wire = wire[part]
    return wire


def test_the_copy_attempt_has_one_shape_from_the_core_to_the_sql_table() -> None:
    # Given an attempt as the decision core emits it
    (emitted,) = run(trade("u1"))
    # The contract model, the core's TypedDict and the emitted dict have the same fields
    wire = model_paths(CopyAttempt)
    assert typed_dict_paths(CopyAttemptWire) == wire
    assert dict_paths(dict(emitted)) == wire
    # Every wire field is a column of copy_attempts or deliberately not one, and the row copies it as is
    assert wire == set(ROW_SOURCES.values()) | set(NOT_COLUMNS), (
        "a copy-attempt field was added or removed: give it a column in projections/rows.py AttemptRow "
        "(and attempt_row) or list it in NOT_COLUMNS with the reason"
    )
    model = CopyAttempt.model_validate(emitted, by_alias=True, by_name=False)
    row = attempt_row(model, "{}", 0, 0)
    assert {f.name for f in fields(AttemptRow)} == set(ROW_SOURCES) | set(ROW_ONLY)
    for column, path in ROW_SOURCES.items():
        assert getattr(row, column) == at(dict(emitted), path), column
    # The SQL tables are the row dataclasses, column for column
    for table, row_type in (
        (copy_attempts, AttemptRow),
        (leader_budget, LeaderBudgetRow),
        (config_history, ConfigHistoryRow),
        (latest_snapshots, SnapshotRow),
    ):
        assert [c.name for c in table.columns] == [f.name for f in fields(row_type)], table.name
