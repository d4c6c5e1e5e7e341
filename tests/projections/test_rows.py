"""The pure projection: events -> row changes (projections/rows.py). No IO."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from models.config import ConfigStore, apply_change
from models.events import CopyAttempt, PortfolioSnapshot
from models.summary import LeaderTally
from projections.rows import (
    BatchProjection,
    LeaderBudgetRow,
    RowChanges,
    WorkingSet,
    attempt_clamps,
    attempt_row,
    exposure_after,
    new_leader,
    snapshot_row,
    supersedes,
    to_json,
    with_attempt,
)
from tests.factories import BUDGETED, T0, USD, equity, global_change, run, shadow, trade, user_change

_n = iter(range(1, 1_000_000))


def attempt(leader: str = "u1", **overrides: Any) -> CopyAttempt:
    """A copy attempt (wire model) with sensible defaults; nested blocks merge their overrides."""
    n = next(_n)
    wire: dict[str, Any] = {
        "kind": "copyAttempt",
        "attemptId": f"att-{n}",
        "followedUserId": leader,
        "groupKey": f"g{n}",
        "assetId": "a1",
        "marketId": "m1",
        "side": "BUY",
        "sourceType": "AGGREGATOR",
        "tradeIds": ["t1", "t2"],
        "bufferedTradeCount": 2,
        "decision": "EXECUTE",
        "reasonCodes": [],
        "theirNotionalMicros": 100 * USD,
        "theirReferencePriceMicros": 500_000,
        "rawTargetMicros": 1 * USD,
        "targetNotionalMicros": 5 * USD,
        "targetShareMicros": 10 * USD,
        "decidedAtMs": T0 + n,
        "sizing": {
            "sizingMode": "budgetedDynamic",
            "budgetedDynamicEnabled": True,
            "budgetedDynamicActive": True,
            "budgetEnforcement": "hard",
            "budgetUsdcMicros": 60 * USD,
            "leaderExposureMicros": 1_000 * USD,
            "leaderExposureStatus": "fresh",
            "rU": 0.06,
            "effectiveRateBps": 100,
            "clampedToRMin": False,
            "clampedToRMax": False,
            "clampedToMin": True,
            "clampedToMax": False,
            "clampedByBankroll": False,
            "equityMicros": 200 * USD,
        },
        "budget": {
            "currentExposureMicros": 20 * USD,
            "headroomMicros": 40 * USD,
            "capped": False,
            "reducing": False,
        },
        "configVersion": "c1",
    }
    for key, value in overrides.items():
        wire[key] = {**wire[key], **value} if isinstance(value, dict) else value
    return CopyAttempt.model_validate(wire, by_alias=True, by_name=False)


def skip(leader: str, reason: str, **overrides: Any) -> CopyAttempt:
    return attempt(leader, decision="SKIP", reasonCodes=[reason], **overrides)


def project(events: list[Any], working: WorkingSet | None = None) -> RowChanges:
    """Fold `events` (attempts, snapshots, config changes) at consecutive offsets into one batch."""
    batch = BatchProjection(working or WorkingSet(config=ConfigStore(), all_leaders=True))
    for offset, event in enumerate(events):
        if isinstance(event, CopyAttempt):
            batch.attempt(event, event.model_dump_json(by_alias=True), 0, offset)
        elif isinstance(event, PortfolioSnapshot):
            batch.snapshot(event, 0, offset)
        else:
            batch.config_change(event, event.model_dump_json(by_alias=True), 0, offset)
    return batch.changes()


# --- copy_attempts rows ------------------------------------------------------------------------


def test_attempt_row_carries_the_first_reason_code_and_every_sizing_and_budget_field() -> None:
    a = skip("alice", "RISK_CAP_USER", budget={"capped": True})
    row = attempt_row(a, "{}", 3, 41)
    assert (row.attempt_id, row.leader_id, row.decision, row.reason) == (
        a.attempt_id,
        "alice",
        "SKIP",
        "RISK_CAP_USER",
    )
    assert (row.trade_count, row.target_notional_micros, row.r_u) == (2, 5 * USD, 0.06)
    assert (row.current_exposure_micros, row.headroom_micros, row.capped) == (20 * USD, 40 * USD, True)
    assert (row.source_partition, row.source_offset, row.config_version) == (3, 41, "c1")


def test_an_executed_attempt_has_no_reason() -> None:
    assert attempt_row(attempt(), "{}", 0, 0).reason is None


def test_clamps_name_each_flag_once_and_hard_cap_from_capped_or_the_reason() -> None:
    flags = {"clampedToRMin": True, "clampedToRMax": True, "clampedToMax": True, "clampedByBankroll": True}
    assert attempt_clamps(attempt(sizing=flags)) == ("rMin", "rMax", "min", "max", "bankroll")
    assert attempt_clamps(attempt(sizing={"clampedToMin": False}, budget={"capped": True})) == ("hardCap",)
    assert attempt_clamps(skip("u", "BUDGET_HARD_CAP_EXCEEDED", sizing={"clampedToMin": False})) == (
        "hardCap",
    )


# --- our exposure estimate ---------------------------------------------------------------------


def test_a_non_reducing_execute_adds_its_target_to_our_exposure() -> None:
    assert exposure_after(attempt(targetNotionalMicros=7 * USD)) == 27 * USD


def test_a_reducing_execute_subtracts_its_target_but_never_below_zero() -> None:
    assert (
        exposure_after(attempt(side="SELL", targetNotionalMicros=5 * USD, budget={"reducing": True}))
        == 15 * USD
    )
    assert exposure_after(attempt(side="SELL", targetNotionalMicros=50 * USD, budget={"reducing": True})) == 0


def test_a_skip_leaves_our_exposure_as_it_was() -> None:
    assert exposure_after(skip("u1", "RISK_CAP_USER")) == 20 * USD


# --- leader_budget -----------------------------------------------------------------------------


def _hard_leader(leader: str = "u1") -> LeaderBudgetRow:
    store = apply_change(
        ConfigStore(), global_change(sizing={**BUDGETED, "budgetUsdcMicros": 60 * USD})
    ).store
    assert store is not None
    return new_leader(leader, store.for_leader(leader))


def test_leader_row_counts_the_attempt_and_takes_rate_and_exposure_from_it() -> None:
    row = with_attempt(_hard_leader(), attempt(targetNotionalMicros=10 * USD))
    assert (row.attempts, row.executed, row.skipped, row.trades) == (1, 1, 0, 2)
    assert (row.r_u, row.effective_rate_bps, row.leader_exposure_status) == (0.06, 100, "fresh")
    assert row.exec_exposure_micros == 30 * USD
    assert row.headroom_micros == 30 * USD
    assert row.utilization == pytest.approx(0.5)


def test_headroom_is_null_unless_hard_enforcement_applies() -> None:
    row = with_attempt(new_leader("u1", ConfigStore().for_leader("u1")), attempt())
    assert row.headroom_micros is None
    assert row.utilization is None  # B_u = 0 by default


def test_an_older_decision_is_counted_but_does_not_replace_the_latest_state() -> None:
    late = attempt(decidedAtMs=T0 + 10_000_000, targetNotionalMicros=1 * USD)
    early = attempt(decidedAtMs=T0, targetNotionalMicros=9 * USD)
    row = with_attempt(with_attempt(_hard_leader(), late), early)
    assert row.attempts == 2
    assert (row.last_attempt_id, row.exec_exposure_micros) == (late.attempt_id, 21 * USD)


# --- a batch: counts once per attemptId ----------------------------------------------------------


def test_a_redelivered_attempt_in_the_same_batch_is_counted_once() -> None:
    a = skip("u1", "RISK_CAP_USER")
    changes = project([a, a, a])
    assert [r.attempt_id for r in changes.attempts] == [a.attempt_id]
    assert changes.reason_counts == Counter({("u1", "RISK_CAP_USER"): 1})
    assert changes.leaders["u1"].attempts == 1
    assert changes.duplicate_attempts == 2


def test_an_attempt_already_stored_changes_nothing() -> None:
    a = skip("u1", "RISK_CAP_USER", budget={"capped": True})
    first = project([a])
    working = WorkingSet(
        config=ConfigStore(), known_attempt_ids={a.attempt_id}, leaders=dict(first.leaders), all_leaders=True
    )
    again = project([a], working)
    assert again.attempts == []
    assert again.reason_counts == Counter()
    assert again.clamp_counts == Counter()
    assert again.leaders == {}


def test_reason_and_clamp_counts_are_per_leader() -> None:
    changes = project(
        [
            skip("u1", "RISK_CAP_USER"),
            skip("u1", "RISK_CAP_USER"),
            skip("u2", "BUDGET_HARD_CAP_EXCEEDED", sizing={"clampedToMin": False}),
            attempt("u2", sizing={"clampedByBankroll": True}),
        ]
    )
    assert changes.reason_counts == Counter(
        {("u1", "RISK_CAP_USER"): 2, ("u2", "BUDGET_HARD_CAP_EXCEEDED"): 1}
    )
    assert changes.clamp_counts == Counter(
        {("u1", "min"): 2, ("u2", "hardCap"): 1, ("u2", "min"): 1, ("u2", "bankroll"): 1}
    )


def test_leader_counts_equal_the_replay_tally_of_the_decision_core() -> None:
    # Given real attempts from the decision core, some redelivered
    wires = run(
        global_change(sizing={**BUDGETED, "budgetUsdcMicros": 20 * USD}),
        shadow("u1", 1_000 * USD),
        *[trade("u1", at=T0 + i * 1_000, notional=(i % 5 + 1) * 300 * USD) for i in range(30)],
        *[trade("u2", at=T0 + i * 1_000, side="SELL" if i % 3 else "BUY") for i in range(20)],
    )
    attempts = [CopyAttempt.model_validate(w, by_alias=True, by_name=False) for w in wires]
    tallies: dict[str, LeaderTally] = {}
    for w in wires:
        tallies.setdefault(w["followedUserId"], LeaderTally()).observe(w)
    # When they are projected with duplicates
    changes = project(attempts + attempts[::3])
    # Then every count equals the tally
    for leader, tally in tallies.items():
        row = changes.leaders[leader]
        assert (row.executed, row.skipped, row.trades) == (tally.executed, tally.skipped, tally.trades)
        reasons = {r: n for (u, r), n in changes.reason_counts.items() if u == leader}
        assert reasons == dict(tally.skip_reasons)


# --- snapshots ---------------------------------------------------------------------------------


def test_the_newest_snapshot_wins_and_an_equal_time_goes_to_the_later_arrival() -> None:
    older = snapshot_row(shadow("u1", 5 * USD, at=T0), 0, 7)
    newer = snapshot_row(shadow("u1", 6 * USD, at=T0 + 1), 0, 3)
    tie = snapshot_row(shadow("u1", 9 * USD, at=T0 + 1), 0, 8)
    assert supersedes(newer, older)
    assert not supersedes(older, newer)
    assert supersedes(tie, newer)
    assert not supersedes(newer, tie)  # the same snapshot replayed later changes nothing


def test_shadow_snapshots_set_e_u_and_exec_slices_set_the_leader_slice() -> None:
    slice_ = PortfolioSnapshot.model_validate(
        {
            "kind": "portfolioSnapshot",
            "portfolioScope": "EXEC_GLOBAL",
            "followedUserId": "u1",
            "bucketTimeMs": T0 + 5,
            "exposureMicros": 12 * USD,
            "equityMicros": None,
            "cashMicros": None,
        }
    )
    changes = project(
        [shadow("u1", 900 * USD, at=T0 + 2), shadow("u1", 100 * USD, at=T0 + 1), slice_, equity(150 * USD)]
    )
    row = changes.leaders["u1"]
    assert (row.leader_exposure_micros, row.leader_exposure_bucket_time_ms) == (900 * USD, T0 + 2)
    assert (row.exec_slice_exposure_micros, row.exec_slice_bucket_time_ms) == (12 * USD, T0 + 5)
    assert changes.snapshots[("EXEC_GLOBAL", "")].equity_micros == 150 * USD
    assert set(changes.snapshots) == {("SHADOW_USER", "u1"), ("EXEC_GLOBAL", "u1"), ("EXEC_GLOBAL", "")}
    assert "" not in changes.leaders


# --- config ------------------------------------------------------------------------------------


def test_config_history_records_accepted_rejected_and_duplicate_changes_with_reports() -> None:
    ok = global_change("g1", sizing={**BUDGETED, "budgetUsdcMicros": 50 * USD})
    bad = user_change("u1", "bad", sizing={"budgetRMinBps": 500, "budgetRMaxBps": 100})
    warned = user_change("u1", "w1", sizing={"budgetedDynamicEnabled": False}, leader={"label": "Alice"})
    changes = project([ok, bad, warned, ok])
    rows = changes.config_history
    assert [(r.change_id, r.status) for r in rows] == [
        ("g1", "accepted"),
        ("bad", "rejected"),
        ("w1", "accepted"),
        ("g1", "duplicate"),
    ]
    assert json.loads(rows[1].errors) == [
        "leader u1: sizing.budgetRMinBps: must be ≤ budgetRMaxBps (500 > 100)"
    ]
    assert len(json.loads(rows[2].warnings)) == 1
    assert [r.config_version for r in rows] == ["g1", "g1", "w1", "w1"]
    assert changes.config is not None
    assert changes.config.version == "w1"


def test_an_accepted_change_refreshes_the_configured_columns_of_every_leader() -> None:
    # Given two stored leaders under the default config
    base = project([attempt("u1"), attempt("u2")])
    working = WorkingSet(config=ConfigStore(), leaders=dict(base.leaders), all_leaders=True)
    # When a GLOBAL change and a USER label arrive
    changes = project(
        [
            global_change(sizing={**BUDGETED, "budgetUsdcMicros": 40 * USD, "budgetRMaxBps": 300}),
            user_change("u2", leader={"label": "Bob"}),
            user_change("u3", sizing={"budgetUsdcMicros": 10 * USD}),
        ],
        working,
    )
    # Then every leader shows the config in force after the batch (u3 appears from its USER document)
    assert {u: (r.label, r.budget_usdc_micros, r.r_max_bps) for u, r in changes.leaders.items()} == {
        "u1": ("u1", 40 * USD, 300),
        "u2": ("Bob", 40 * USD, 300),
        "u3": ("u3", 10 * USD, 300),
    }
    assert changes.leaders["u1"].attempts == 1


def test_a_batch_with_a_config_change_requires_every_leader_row() -> None:
    with pytest.raises(ValueError, match="every leader"):
        project([global_change(system={"copyEngineEnabled": False})], WorkingSet(config=ConfigStore()))


def test_json_text_is_canonical() -> None:
    assert to_json({"b": [1], "a": "é"}) == '{"a":"é","b":[1]}'
