"""Configuration (SPEC 2, 12.1, 12.8): defaults, inheritance, the kill switch and validation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from models.config import RULES, ChangeOutcome, ConfigStore, EffectiveConfig, apply_change, merge_effective
from models.events import ConfigChange
from tests.factories import BUDGETED, T0, USD, Driver, global_change, tick, trade, user_change

INT64_MAX = 2**63 - 1


# --- the SPEC 2 tables, written out independently of models.config -------------------------------------


@dataclass(frozen=True)
class Key:
    """One row of the SPEC 2 tables: where the key lives, its type, default and allowed range."""

    section: str
    name: str
    attr: str
    """The EffectiveConfig attribute that carries the key."""
    type: str
    default: Any
    lo: int = 0
    hi: int | None = None
    """Upper bound from SPEC (None: unbounded)."""
    choices: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def scope(self) -> str:
        return "USER" if self.section == "leader" else "GLOBAL"

    def __str__(self) -> str:
        return self.path


SPEC_KEYS: tuple[Key, ...] = (
    Key("sizing", "copyPctNotionalBps", "copy_pct_notional_bps", "int", 100),
    Key("sizing", "minTradeNotionalMicros", "min_trade_notional_micros", "int", 5_000_000),
    Key("sizing", "maxTradeNotionalMicros", "max_trade_notional_micros", "int", 250_000_000),
    Key("sizing", "maxTradeBankrollBps", "max_trade_bankroll_bps", "int", 75),
    Key("sizing", "sizingMode", "sizing_mode", "enum", "fixedRate", choices=("fixedRate", "budgetedDynamic")),
    Key("sizing", "budgetedDynamicEnabled", "budgeted_dynamic_enabled", "bool", False),
    Key("sizing", "budgetUsdcMicros", "budget_usdc_micros", "int", 0),
    Key("sizing", "budgetRMinBps", "budget_r_min_bps", "int", 0),
    Key("sizing", "budgetRMaxBps", "budget_r_max_bps", "int", 100),
    Key("sizing", "budgetEnforcement", "budget_enforcement", "enum", "hard", choices=("hard", "soft")),
    Key("sizing", "minLeaderTradeNotionalMicros", "min_leader_trade_notional_micros", "int", 0),
    Key(
        "sizing",
        "leaderExposureSource",
        "leader_exposure_source",
        "enum",
        "snapshot",
        choices=("snapshot", "shadowBook", "snapshotElseShadowBook"),
    ),
    Key("guardrails", "maxBuyCostPerShareMicros", "max_buy_cost_per_share_micros", "int", None, hi=1_000_000),
    Key("guardrails", "maxExposurePerUserBps", "max_exposure_per_user_bps", "int", 2_000),
    Key("buffering", "enabled", "buffering_enabled", "bool", False),
    Key("buffering", "notionalThresholdMicros", "notional_threshold_micros", "int", 250_000),
    Key("buffering", "flushMinNotionalMicros", "flush_min_notional_micros", "int", 500_000),
    Key("buffering", "minExecNotionalMicros", "min_exec_notional_micros", "int", 100_000),
    Key("buffering", "maxBufferMs", "max_buffer_ms", "int", 2_500, lo=100),
    Key("buffering", "quietFlushMs", "quiet_flush_ms", "int", 600, lo=50),
    Key(
        "buffering",
        "nettingMode",
        "netting_mode",
        "enum",
        "sameSideOnly",
        choices=("sameSideOnly", "netBuySell"),
    ),
    Key("system", "copyEngineEnabled", "copy_engine_enabled", "bool", True),
    Key("system", "aggregationWindowMs", "aggregation_window_ms", "int", 250, hi=60_000),
    Key("system", "initialBankrollMicros", "initial_bankroll_micros", "int", 10_000_000_000),
    Key("system", "leaderExposureMaxAgeMs", "leader_exposure_max_age_ms", "int", 3_600_000),
    Key("system", "dedupWindowMs", "dedup_window_ms", "int", 86_400_000, lo=60_000),
    # SPEC 13.1
    Key("system", "fillModel", "fill_model", "enum", "paper", choices=("paper", "reports")),
    Key("system", "orderTimeoutMs", "order_timeout_ms", "int", 60_000, lo=1_000, hi=86_400_000),
    Key("system", "bookIntervalMs", "book_interval_ms", "int", 1_000, hi=3_600_000),
    Key("leader", "enabled", "leader_enabled", "bool", True),
    # SPEC: the label defaults to the leader id; the effective config leaves it unset (None) and
    # readers fall back to the id.
    Key("leader", "label", "label", "str", None),
)
KEY_BY_PATH = {k.path: k for k in SPEC_KEYS}

GLOBAL_SECTIONS = ("sizing", "guardrails", "buffering", "system")
USER_SECTIONS = ("sizing", "guardrails", "leader")

COMPANIONS: dict[str, dict[str, Any]] = {
    # keys that must move together so a boundary value does not trip a cross-field rule
    "sizing.maxTradeNotionalMicros": {"minTradeNotionalMicros": 0},
    "sizing.minTradeNotionalMicros": {"maxTradeNotionalMicros": INT64_MAX},
    "sizing.budgetRMinBps": {"budgetRMaxBps": INT64_MAX},
}


def wrong_types(key: Key) -> list[Any]:
    """Values of the wrong JSON type for `key` (SPEC 12.1: "int" is not true, not 1.0)."""
    if key.type == "int":
        return [True, False, 1.0, 5.5, "5", None, [5], {"v": 5}]
    if key.type == "bool":
        return [1, 0, "true", None, [True]]
    if key.type == "enum":
        return ["bogus", key.choices[0].upper(), "", 1, None, [key.choices[0]]]
    return [5, "", None, "x" * 201, ["x"]]  # str (leader.label)


def out_of_range(key: Key) -> list[int]:
    values = [key.lo - 1]
    if key.hi is not None:
        values.append(key.hi + 1)
    return values


def boundary_values(key: Key) -> list[Any]:
    if key.type == "int":
        return [key.lo] if key.hi is None else [key.lo, key.hi]
    if key.type == "bool":
        return [True, False]
    if key.type == "enum":
        return list(key.choices)
    return ["x", "x" * 200]


def cases(make: Any, keys: tuple[Key, ...] = SPEC_KEYS) -> list[Any]:
    return [pytest.param(k, v, id=f"{k.path}={v!r}"[:80]) for k in keys for v in make(k)]


INT_KEYS = tuple(k for k in SPEC_KEYS if k.type == "int")
# Keys that a USER document may carry (the kill switch is dropped there, see its own tests).
USER_KEYS = tuple(
    k for k in SPEC_KEYS if k.section in USER_SECTIONS and k.path != "sizing.budgetedDynamicEnabled"
)
USER_INT_KEYS = tuple(k for k in USER_KEYS if k.type == "int")


# --- helpers -------------------------------------------------------------------------------------------


def change_setting(
    key: Key, value: Any, change_id: str = "bad", scope: str | None = None, **extra: Any
) -> ConfigChange:
    """A change that sets `key` to `value` (plus `extra` keys of the same section)."""
    sections = {key.section: {**extra, key.name: value}}
    if (scope or key.scope) == "GLOBAL":
        return global_change(change_id, **sections)
    return user_change("u1", change_id, **sections)


def accepted(outcome: ChangeOutcome) -> ConfigStore:
    assert outcome.store is not None, f"expected the change to be accepted, got {outcome.errors}"
    return outcome.store


def store_after(*changes: ConfigChange) -> ConfigStore:
    store = ConfigStore()
    for change in changes:
        store = accepted(apply_change(store, change))
    return store


def errors_of(outcome: ChangeOutcome) -> tuple[str, ...]:
    assert outcome.store is None, "expected the change to be rejected"
    assert outcome.errors, "a rejection must carry errors"
    return outcome.errors


def names(errors: tuple[str, ...], prefix: str) -> bool:
    return any(e.startswith(prefix + ":") for e in errors)


# --- defaults (SPEC 2.1–2.4) ---------------------------------------------------------------------------


def test_the_spec_tables_cover_every_config_key_and_effective_field() -> None:
    # given the keys of the code and of SPEC
    code_keys = {f"{section}.{key}" for section, rules in RULES.items() for key in rules}
    derived = {"budgeted_dynamic_active", "hard_budget"}  # computed from the keys, not keys themselves
    effective_fields = {f.name for f in dataclasses.fields(EffectiveConfig)} - derived

    # then they are the same sets (a new key must be added to SPEC and to these tests)
    assert code_keys == set(KEY_BY_PATH)
    assert effective_fields == {k.attr for k in SPEC_KEYS}


def test_an_empty_store_has_exactly_the_spec_defaults() -> None:
    # given no config change at all
    effective = ConfigStore().global_effective

    # then the GLOBAL-effective config equals the SPEC tables, key by key
    values: dict[str, Any] = {k.attr: k.default for k in SPEC_KEYS}
    expected = EffectiveConfig(**values, budgeted_dynamic_active=False, hard_budget=False)
    assert effective == expected


@pytest.mark.parametrize("key", SPEC_KEYS, ids=str)
def test_each_key_defaults_to_its_spec_value(key: Key) -> None:
    assert getattr(ConfigStore().global_effective, key.attr) == key.default


def test_a_leader_without_documents_uses_the_defaults_and_version_is_null() -> None:
    store = ConfigStore()

    assert store.for_leader("u1") == store.global_effective
    assert store.version is None
    assert store.global_effective.max_buy_cost_per_share_micros is None  # absent = guard off
    assert not store.global_effective.budgeted_dynamic_active


def test_attempts_before_any_config_change_carry_a_null_config_version() -> None:
    driver = Driver(trade("u1", at=T0), tick(T0 + 250))

    assert [a["configVersion"] for a in driver.attempts] == [None]


# --- inheritance (SPEC 2.5, 3 configChange) ------------------------------------------------------------


def test_a_global_key_overrides_the_default_for_every_leader() -> None:
    # given a GLOBAL change of one key
    store = store_after(global_change(sizing={"copyPctNotionalBps": 250}))

    # then the GLOBAL-effective config and a leader without USER documents both see it
    assert store.global_effective.copy_pct_notional_bps == 250
    assert store.for_leader("u9").copy_pct_notional_bps == 250
    # and the keys left out still inherit the defaults
    assert store.global_effective.max_trade_bankroll_bps == 75


def test_a_user_key_overrides_the_global_value_for_that_leader_only() -> None:
    # given GLOBAL and USER values of the same key
    store = store_after(
        global_change(sizing={"copyPctNotionalBps": 250}),
        user_change("u1", sizing={"copyPctNotionalBps": 300}),
    )

    # then u1 sees its own value, other leaders and GLOBAL the GLOBAL one
    assert store.for_leader("u1").copy_pct_notional_bps == 300
    assert store.for_leader("u2").copy_pct_notional_bps == 250
    assert store.global_effective.copy_pct_notional_bps == 250


def test_keys_absent_from_a_user_document_inherit_from_global() -> None:
    # given a USER sizing document with one key, and GLOBAL documents in two sections
    store = store_after(
        global_change(sizing={"maxTradeBankrollBps": 50}, guardrails={"maxExposurePerUserBps": 900}),
        user_change("u1", sizing={"copyPctNotionalBps": 300}),
    )
    u1 = store.for_leader("u1")

    # then every other key of u1 comes from GLOBAL, or from the defaults
    assert u1.copy_pct_notional_bps == 300
    assert u1.max_trade_bankroll_bps == 50
    assert u1.max_exposure_per_user_bps == 900
    assert u1.min_trade_notional_micros == 5_000_000


def test_a_later_global_change_reaches_keys_a_leader_inherits() -> None:
    # given a leader with its own sizing document
    store = store_after(user_change("u1", sizing={"copyPctNotionalBps": 300}))

    # when GLOBAL then changes a key u1 does not set
    store = accepted(apply_change(store, global_change(sizing={"maxTradeBankrollBps": 40})))

    # then u1 sees the new GLOBAL value and keeps its own
    assert store.for_leader("u1").max_trade_bankroll_bps == 40
    assert store.for_leader("u1").copy_pct_notional_bps == 300


def test_a_global_section_change_replaces_the_stored_section_so_removed_keys_inherit_again() -> None:
    # given a GLOBAL sizing document with two keys
    store = store_after(global_change(sizing={"copyPctNotionalBps": 250, "maxTradeBankrollBps": 50}))

    # when a later GLOBAL change carries sizing with only one of them
    store = accepted(apply_change(store, global_change(sizing={"maxTradeBankrollBps": 60})))

    # then the left-out key falls back to its default
    assert store.global_effective.copy_pct_notional_bps == 100
    assert store.global_effective.max_trade_bankroll_bps == 60
    assert store.global_docs["sizing"] == {"maxTradeBankrollBps": 60}


def test_a_user_section_change_replaces_that_leaders_stored_section_so_removed_keys_inherit_again() -> None:
    # given u1 overrides two sizing keys over a GLOBAL value
    store = store_after(
        global_change(sizing={"copyPctNotionalBps": 250}),
        user_change("u1", sizing={"copyPctNotionalBps": 300, "maxTradeBankrollBps": 10}),
    )

    # when u1's sizing is replaced by a document without copyPctNotionalBps
    store = accepted(apply_change(store, user_change("u1", sizing={"maxTradeBankrollBps": 20})))

    # then u1 inherits the GLOBAL value again
    assert store.for_leader("u1").copy_pct_notional_bps == 250
    assert store.for_leader("u1").max_trade_bankroll_bps == 20


def test_an_empty_section_makes_every_key_of_it_inherit() -> None:
    store = store_after(
        global_change(guardrails={"maxBuyCostPerShareMicros": 900_000, "maxExposurePerUserBps": 10})
    )

    store = accepted(apply_change(store, global_change(guardrails={})))

    assert store.global_effective.max_buy_cost_per_share_micros is None
    assert store.global_effective.max_exposure_per_user_bps == 2_000


def test_sections_absent_from_a_change_are_left_unchanged() -> None:
    # given stored GLOBAL sizing and USER sizing/leader documents
    store = store_after(
        global_change(sizing={"copyPctNotionalBps": 250}),
        user_change("u1", sizing={"maxTradeBankrollBps": 10}, leader={"label": "Whale"}),
    )

    # when later changes carry other sections only
    store = accepted(apply_change(store, global_change(guardrails={"maxExposurePerUserBps": 500})))
    store = accepted(apply_change(store, user_change("u1", guardrails={"maxExposurePerUserBps": 400})))

    # then the sections they did not carry are untouched
    assert store.global_effective.copy_pct_notional_bps == 250
    assert store.for_leader("u1").max_trade_bankroll_bps == 10
    assert store.for_leader("u1").label == "Whale"
    assert store.for_leader("u1").max_exposure_per_user_bps == 400
    assert store.for_leader("u2").max_exposure_per_user_bps == 500


def test_a_user_change_of_one_leader_does_not_touch_another_leader() -> None:
    store = store_after(
        user_change("u1", leader={"label": "One"}),
        user_change("u2", leader={"label": "Two"}),
    )

    store = accepted(apply_change(store, user_change("u1", leader={"enabled": False})))

    assert store.for_leader("u1").label is None
    assert not store.for_leader("u1").leader_enabled
    assert store.for_leader("u2").label == "Two"
    assert store.for_leader("u2").leader_enabled


def test_applying_a_change_never_mutates_the_previous_store() -> None:
    before = store_after(global_change(sizing={"copyPctNotionalBps": 250}), user_change("u1", sizing={}))
    snapshot = before.to_json()

    apply_change(before, global_change(sizing={"copyPctNotionalBps": 300}))
    apply_change(before, user_change("u1", sizing={"copyPctNotionalBps": 7}))
    apply_change(before, global_change(sizing={"copyPctNotionalBps": -1}))

    assert before.to_json() == snapshot
    assert before.global_effective.copy_pct_notional_bps == 250


# --- the kill switch and "active" (SPEC 2.5) -----------------------------------------------------------


def test_the_kill_switch_in_a_user_document_is_dropped_with_a_warning() -> None:
    # given the GLOBAL kill switch is off
    # when a USER change tries to switch Budgeted Dynamic on for u1
    change = user_change(
        "u1",
        "c-user",
        sizing={"budgetedDynamicEnabled": True, "sizingMode": "budgetedDynamic", "budgetUsdcMicros": USD},
    )
    outcome = apply_change(ConfigStore(), change)

    # then the change is accepted without the key, and the drop is reported
    store = accepted(outcome)
    assert store.user_docs["u1"]["sizing"] == {"sizingMode": "budgetedDynamic", "budgetUsdcMicros": USD}
    assert len(outcome.warnings) == 1
    assert "sizing.budgetedDynamicEnabled" in outcome.warnings[0]
    # and it has no effect
    assert not store.for_leader("u1").budgeted_dynamic_enabled
    assert not store.for_leader("u1").budgeted_dynamic_active


def test_the_kill_switch_warning_is_emitted_as_a_config_warning_on_the_accepted_change() -> None:
    # given a USER change carrying the kill switch
    driver = Driver(user_change("u1", "c-user", sizing={"budgetedDynamicEnabled": True}))

    # then one configWarning names the change and the key, and nothing is rejected
    assert [w.change_id for w in driver.warnings] == ["c-user"]
    assert any("sizing.budgetedDynamicEnabled" in w for w in driver.warnings[0].warnings)
    assert driver.rejections == []
    assert driver.state.config.version == "c-user"


def test_an_accepted_change_without_dropped_keys_emits_no_warning() -> None:
    driver = Driver(user_change("u1", sizing={"copyPctNotionalBps": 5}), global_change(sizing=BUDGETED))

    assert driver.warnings == []


def test_a_user_kill_switch_does_not_turn_budgeted_dynamic_on_for_the_leaders_groups() -> None:
    # given GLOBAL off, and u1 asks for Budgeted Dynamic in its own document
    driver = Driver(
        user_change(
            "u1",
            sizing={
                "budgetedDynamicEnabled": True,
                "sizingMode": "budgetedDynamic",
                "budgetUsdcMicros": 1_000 * USD,
            },
        ),
        trade("u1", at=T0, notional=100 * USD),
        tick(T0 + 250),
    )

    # then u1's group is sized exactly at the fixed rate
    (attempt,) = driver.attempts
    assert attempt["sizing"]["budgetedDynamicEnabled"] is False
    assert attempt["sizing"]["budgetedDynamicActive"] is False
    assert attempt["rawTargetMicros"] == 1 * USD  # 100 USD × 100 bps


def test_a_user_kill_switch_set_to_false_cannot_turn_budgeted_dynamic_off_for_a_leader() -> None:
    store = store_after(
        global_change(sizing={**BUDGETED, "budgetUsdcMicros": 50 * USD}),
        user_change("u1", sizing={"budgetedDynamicEnabled": False}),
    )

    assert store.for_leader("u1").budgeted_dynamic_active


def test_merge_reads_the_kill_switch_from_global_even_if_a_user_document_carries_it() -> None:
    effective = merge_effective(
        {"sizing": {"sizingMode": "budgetedDynamic"}},
        {"sizing": {"budgetedDynamicEnabled": True, "budgetUsdcMicros": USD}},
    )

    assert not effective.budgeted_dynamic_enabled
    assert not effective.budgeted_dynamic_active


@pytest.mark.parametrize(
    ("switch", "mode", "active"),
    [
        (True, "budgetedDynamic", True),
        (True, "fixedRate", False),
        (False, "budgetedDynamic", False),
        (False, "fixedRate", False),
    ],
)
def test_budgeted_dynamic_is_active_iff_the_switch_is_on_and_the_mode_selects_it(
    switch: bool, mode: Literal["fixedRate", "budgetedDynamic"], active: bool
) -> None:
    cfg = merge_effective({"sizing": {"budgetedDynamicEnabled": switch, "sizingMode": mode}}, None)

    assert cfg.budgeted_dynamic_active is active


@pytest.mark.parametrize(
    ("global_sizing", "user_sizing", "u1_active", "u2_active"),
    [
        pytest.param(
            {**BUDGETED, "budgetUsdcMicros": USD}, None, True, True, id="global-switch-and-global-mode"
        ),
        pytest.param(
            {"budgetedDynamicEnabled": True},
            {"sizingMode": "budgetedDynamic", "budgetUsdcMicros": USD},
            True,
            False,
            id="global-switch-and-user-mode",
        ),
        pytest.param(
            {**BUDGETED, "budgetUsdcMicros": USD},
            {"sizingMode": "fixedRate"},
            False,
            True,
            id="user-mode-fixed-rate-opts-out",
        ),
        pytest.param(
            {"sizingMode": "budgetedDynamic"},
            {"sizingMode": "budgetedDynamic"},
            False,
            False,
            id="switch-off",
        ),
    ],
)
def test_budgeted_dynamic_activity_follows_the_global_switch_and_the_effective_mode(
    global_sizing: dict[str, Any], user_sizing: dict[str, Any] | None, u1_active: bool, u2_active: bool
) -> None:
    # given a GLOBAL document and maybe a USER document for u1
    changes = [global_change(sizing=global_sizing)]
    if user_sizing is not None:
        changes.append(user_change("u1", sizing=user_sizing))
    driver = Driver(*changes, trade("u1", at=T0), trade("u2", at=T0), tick(T0 + 250))
    assert driver.rejections == []

    # then the attempts report it, and the effective configs agree
    active = {a["followedUserId"]: a["sizing"]["budgetedDynamicActive"] for a in driver.attempts}
    assert active == {"u1": u1_active, "u2": u2_active}
    assert driver.state.config.for_leader("u1").budgeted_dynamic_active is u1_active


def test_sizing_is_exactly_fixed_rate_when_budgeted_dynamic_is_not_active() -> None:
    # given a budget and rates that would change the target if Budgeted Dynamic applied
    driver = Driver(
        global_change(
            sizing={
                "sizingMode": "budgetedDynamic",
                "budgetUsdcMicros": 10 * USD,
                "budgetRMaxBps": 5_000,
                "copyPctNotionalBps": 300,
            }
        ),
        trade("u1", at=T0, notional=100 * USD),
        tick(T0 + 250),
    )

    (attempt,) = driver.attempts
    assert attempt["rawTargetMicros"] == 3 * USD
    assert attempt["sizing"]["effectiveRateBps"] == 300


# --- per-key validation (SPEC 2.5, 12.1) ---------------------------------------------------------------


@pytest.mark.parametrize(("key", "value"), cases(wrong_types))
def test_a_value_of_the_wrong_type_is_rejected_naming_the_key(key: Key, value: Any) -> None:
    outcome = apply_change(ConfigStore(), change_setting(key, value))

    assert names(errors_of(outcome), key.path)


@pytest.mark.parametrize(("key", "value"), cases(wrong_types, USER_KEYS))
def test_a_value_of_the_wrong_type_in_a_user_document_is_rejected_naming_the_key(
    key: Key, value: Any
) -> None:
    outcome = apply_change(ConfigStore(), change_setting(key, value, scope="USER"))

    assert names(errors_of(outcome), key.path)


@pytest.mark.parametrize(("key", "value"), cases(out_of_range, INT_KEYS))
def test_a_value_out_of_range_is_rejected_naming_the_key(key: Key, value: int) -> None:
    outcome = apply_change(ConfigStore(), change_setting(key, value))

    assert names(errors_of(outcome), key.path)


@pytest.mark.parametrize(("key", "value"), cases(out_of_range, USER_INT_KEYS))
def test_a_value_out_of_range_in_a_user_document_is_rejected_naming_the_key(key: Key, value: int) -> None:
    outcome = apply_change(ConfigStore(), change_setting(key, value, scope="USER"))

    assert names(errors_of(outcome), key.path)


@pytest.mark.parametrize("key", [k for k in INT_KEYS if k.hi is None], ids=str)
def test_an_unbounded_int_beyond_int64_is_rejected(key: Key) -> None:
    # SPEC sets no upper bound; the code caps every wire integer at a SQL BIGINT
    extra = COMPANIONS.get(key.path, {})
    outcome = apply_change(ConfigStore(), change_setting(key, INT64_MAX + 1, **extra))

    assert names(errors_of(outcome), key.path)


@pytest.mark.parametrize(("key", "value"), cases(boundary_values))
def test_a_boundary_value_is_accepted_and_takes_effect(key: Key, value: Any) -> None:
    # given a change setting the key to the edge of its range (or any allowed value)
    extra = COMPANIONS.get(key.path, {})

    # when it is applied
    store = accepted(apply_change(ConfigStore(), change_setting(key, value, change_id="edge", **extra)))

    # then the effective config of its scope carries it
    effective = store.global_effective if key.scope == "GLOBAL" else store.for_leader("u1")
    assert getattr(effective, key.attr) == value
    assert store.version == "edge"


@pytest.mark.parametrize(
    ("section", "values"),
    [
        ("buffering", {"maxBufferMs": 100}),
        ("buffering", {"quietFlushMs": 50}),
        ("system", {"dedupWindowMs": 60_000}),
        ("system", {"aggregationWindowMs": 0}),
        ("system", {"aggregationWindowMs": 60_000}),
        ("guardrails", {"maxBuyCostPerShareMicros": 0}),
        ("guardrails", {"maxBuyCostPerShareMicros": 1_000_000}),
        ("sizing", {"budgetRMinBps": 100, "budgetRMaxBps": 100}),
        ("sizing", {"minTradeNotionalMicros": 7 * USD, "maxTradeNotionalMicros": 7 * USD}),
    ],
)
def test_named_boundary_values_are_accepted(section: str, values: dict[str, Any]) -> None:
    outcome = apply_change(ConfigStore(), global_change(None, **{section: values}))

    assert accepted(outcome).global_docs[section] == values


def test_null_max_buy_cost_is_rejected_because_inherit_means_leaving_the_key_out() -> None:
    # given the guard is set
    store = store_after(global_change(guardrails={"maxBuyCostPerShareMicros": 900_000}))

    # when a change tries to switch it off with null
    outcome = apply_change(store, global_change(guardrails={"maxBuyCostPerShareMicros": None}))

    # then it is rejected naming the key, and the guard stays set
    assert names(errors_of(outcome), "guardrails.maxBuyCostPerShareMicros")
    assert store.global_effective.max_buy_cost_per_share_micros == 900_000


def test_null_max_buy_cost_in_a_user_document_is_rejected() -> None:
    outcome = apply_change(ConfigStore(), user_change("u1", guardrails={"maxBuyCostPerShareMicros": None}))

    assert names(errors_of(outcome), "guardrails.maxBuyCostPerShareMicros")


def test_every_bad_key_of_a_change_is_named_in_one_rejection() -> None:
    outcome = apply_change(
        ConfigStore(),
        global_change(
            sizing={"copyPctNotionalBps": -1, "sizingMode": "whale", "maxTradeBankrollBps": 10},
            buffering={"maxBufferMs": 99},
            system={"bogus": 1},
        ),
    )

    errors = errors_of(outcome)
    for path in ("sizing.copyPctNotionalBps", "sizing.sizingMode", "buffering.maxBufferMs", "system.bogus"):
        assert names(errors, path), path
    assert not names(errors, "sizing.maxTradeBankrollBps")


# --- unknown keys and sections -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "section"),
    [("GLOBAL", s) for s in GLOBAL_SECTIONS] + [("USER", s) for s in USER_SECTIONS],
)
@pytest.mark.parametrize("unknown", ["notAKey", "copy_pct_notional_bps", "CopyPctNotionalBps", "Enabled"])
def test_an_unknown_key_is_rejected_naming_it(scope: str, section: str, unknown: str) -> None:
    sections = {section: {unknown: 1}}
    change = global_change(None, **sections) if scope == "GLOBAL" else user_change("u1", None, **sections)

    outcome = apply_change(ConfigStore(), change)

    assert names(errors_of(outcome), f"{section}.{unknown}")


@pytest.mark.parametrize(
    ("scope", "section"), [("USER", "buffering"), ("USER", "system"), ("GLOBAL", "leader")]
)
def test_a_section_not_allowed_for_the_scope_is_rejected_naming_it(scope: str, section: str) -> None:
    sections: dict[str, Any] = {section: {}}
    change = global_change(None, **sections) if scope == "GLOBAL" else user_change("u1", None, **sections)

    errors = errors_of(apply_change(ConfigStore(), change))

    assert any(e.startswith(section) for e in errors)


@pytest.mark.parametrize("value", [5, "sizing", [], None, True])
def test_a_section_that_is_not_an_object_is_rejected_naming_it(value: Any) -> None:
    errors = errors_of(apply_change(ConfigStore(), global_change(sizing=value)))

    assert any(e.startswith("sizing") for e in errors)


# --- cross-field rules (SPEC 2.5) ----------------------------------------------------------------------


def test_r_min_above_r_max_is_rejected_naming_budget_r_min() -> None:
    errors = errors_of(
        apply_change(ConfigStore(), global_change(sizing={"budgetRMinBps": 200, "budgetRMaxBps": 100}))
    )

    assert names(errors, "sizing.budgetRMinBps")


def test_r_min_above_the_inherited_r_max_is_rejected() -> None:
    # default budgetRMaxBps is 100
    errors = errors_of(apply_change(ConfigStore(), global_change(sizing={"budgetRMinBps": 101})))

    assert names(errors, "sizing.budgetRMinBps")


def test_min_trade_notional_above_max_is_rejected_naming_both_keys() -> None:
    errors = errors_of(
        apply_change(ConfigStore(), global_change(sizing={"minTradeNotionalMicros": 250_000_001}))
    )

    assert len(errors) == 1
    assert "minTradeNotionalMicros" in errors[0]
    assert "maxTradeNotionalMicros" in errors[0]
    assert errors[0].startswith("sizing.")


def test_usd_budget_must_be_positive_when_dynamic_is_active() -> None:
    errors = errors_of(apply_change(ConfigStore(), global_change(sizing=BUDGETED)))

    assert names(errors, "sizing.budgetUsdcMicros")


def test_a_zero_budget_is_fine_while_dynamic_is_not_active() -> None:
    store = store_after(
        global_change(sizing={"sizingMode": "budgetedDynamic"}),
        global_change(sizing={"budgetedDynamicEnabled": True}),
    )

    assert store.global_effective.budget_usdc_micros == 0
    assert not store.global_effective.budgeted_dynamic_active


def test_a_user_change_that_makes_dynamic_active_without_a_budget_is_rejected_naming_the_leader() -> None:
    # given the GLOBAL switch is on (GLOBAL mode stays fixed rate)
    store = store_after(global_change(sizing={"budgetedDynamicEnabled": True}))

    # when u1 selects Budgeted Dynamic without a budget
    errors = errors_of(apply_change(store, user_change("u1", sizing={"sizingMode": "budgetedDynamic"})))

    # then the error names the leader and the key
    assert names(errors, "leader u1: sizing.budgetUsdcMicros")


def test_a_user_cross_field_error_names_the_leader() -> None:
    errors = errors_of(apply_change(ConfigStore(), user_change("u7", sizing={"budgetRMinBps": 500})))

    assert names(errors, "leader u7: sizing.budgetRMinBps")


def test_a_global_change_that_breaks_a_leaders_effective_config_is_rejected_naming_that_leader() -> None:
    # given u1 selected Budgeted Dynamic (inactive while the switch is off) and u2 has its own document
    store = store_after(
        user_change("u1", sizing={"sizingMode": "budgetedDynamic"}),
        user_change("u2", sizing={"copyPctNotionalBps": 50}),
    )

    # when GLOBAL turns the switch on (GLOBAL itself stays fixed rate, so it is valid)
    errors = errors_of(apply_change(store, global_change(sizing={"budgetedDynamicEnabled": True})))

    # then the change is rejected because of u1 only
    assert errors == (errors[0],)
    assert errors[0].startswith("leader u1: sizing.budgetUsdcMicros:")


def test_a_global_change_is_checked_against_user_overrides_of_the_other_bound() -> None:
    # given u1 raises its r_min within the default r_max
    store = store_after(user_change("u1", sizing={"budgetRMinBps": 50}))

    # when GLOBAL lowers r_max below u1's r_min
    errors = errors_of(apply_change(store, global_change(sizing={"budgetRMaxBps": 40})))

    # then only u1's effective config is named
    assert len(errors) == 1
    assert errors[0].startswith("leader u1: sizing.budgetRMinBps:")


def test_a_global_change_is_not_checked_against_leaders_without_user_documents() -> None:
    # given leaders u1 and u2 exist in the partition but have no USER documents
    driver = Driver(trade("u1", at=T0), trade("u2", at=T0))

    # when GLOBAL breaks a rule
    driver.feed(global_change("bad", sizing={"budgetRMinBps": 101}))

    # then only the GLOBAL-effective config is named
    (rejection,) = driver.rejections
    assert rejection.errors == tuple(e for e in rejection.errors if not e.startswith("leader "))
    assert names(rejection.errors, "sizing.budgetRMinBps")


def test_a_rejected_global_change_through_the_engine_names_the_leader_in_config_rejected() -> None:
    # given u1 has selected Budgeted Dynamic without a budget
    driver = Driver(
        user_change("u1", "c1", sizing={"sizingMode": "budgetedDynamic"}),
        global_change("c2", sizing={"budgetedDynamicEnabled": True}),
    )

    # then the engine reports configRejected for c2 naming u1, and c1 stays in force
    (rejection,) = driver.rejections
    assert rejection.change_id == "c2"
    assert names(rejection.errors, "leader u1: sizing.budgetUsdcMicros")
    assert driver.state.config.version == "c1"
    assert not driver.state.config.global_effective.budgeted_dynamic_enabled


# --- a rejected change changes nothing; an accepted one bumps configVersion (SPEC 12.8) ----------------


@pytest.mark.parametrize(("key", "value"), cases(lambda k: [*out_of_range(k)[:1], wrong_types(k)[0]]))
def test_a_rejected_change_leaves_the_previous_config_and_version_in_force(key: Key, value: Any) -> None:
    # given an accepted change, then a rejected one that also carries a good key
    good = global_change("c-good", sizing={"copyPctNotionalBps": 200})
    driver = Driver(good)
    before = driver.state.config
    bad = change_setting(key, value, change_id="c-bad")
    if key.section == "sizing":
        bad = change_setting(key, value, change_id="c-bad", scope=key.scope, maxTradeBankrollBps=1)
    if key.path == "sizing.maxTradeBankrollBps":
        bad = change_setting(key, value, change_id="c-bad", copyPctNotionalBps=1)

    # when the bad change is processed and a trade decided afterwards
    driver.feed(bad, trade("u1", at=T0), tick(T0 + 250))

    # then it is reported as rejected naming the key
    (rejection,) = driver.rejections
    assert rejection.change_id == "c-bad"
    assert names(rejection.errors, key.path)
    # and the config in force is exactly the previous one
    assert driver.state.config is before
    assert driver.state.config.version == "c-good"
    (attempt,) = driver.attempts
    assert attempt["configVersion"] == "c-good"
    assert attempt["rawTargetMicros"] == 2 * USD  # 100 USD × 200 bps: the good key of "bad" did not land
    assert attempt["sizing"]["effectiveRateBps"] == 200


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(global_change("c-new", sizing={"copyPctNotionalBps": 150}), id="GLOBAL"),
        pytest.param(user_change("u1", "c-new", leader={"label": "One"}), id="USER-of-the-leader"),
        pytest.param(user_change("u9", "c-new", leader={"label": "Other"}), id="USER-of-another-leader"),
    ],
)
def test_an_accepted_change_of_any_scope_becomes_the_config_version(change: ConfigChange) -> None:
    # given an earlier accepted change
    driver = Driver(global_change("c-old", sizing={}))

    # when another change is accepted and a group decided after it
    driver.feed(change, trade("u1", at=T0), tick(T0 + 250))

    # then the attempt and the store carry the newest change id
    assert driver.rejections == []
    assert driver.state.config.version == "c-new"
    assert [a["configVersion"] for a in driver.attempts] == ["c-new"]


def test_an_accepted_change_with_a_warning_still_becomes_the_config_version() -> None:
    driver = Driver(
        user_change("u1", "c-warn", sizing={"budgetedDynamicEnabled": True}),
        trade("u2", at=T0),
        tick(T0 + 250),
    )

    assert [a["configVersion"] for a in driver.attempts] == ["c-warn"]


# --- an accepted change takes effect for groups decided after it (SPEC 3, 12.10) -----------------------


def test_pausing_the_engine_skips_later_groups_and_resuming_executes_again() -> None:
    # given the engine is paused
    driver = Driver(global_change("pause", system={"copyEngineEnabled": False}))

    # when a group is decided
    driver.feed(trade("u1", at=T0), tick(T0 + 250))

    # then it is skipped ENGINE_PAUSED
    assert [(a["decision"], a["reasonCodes"]) for a in driver.attempts] == [("SKIP", ["ENGINE_PAUSED"])]

    # when the engine is resumed (the system section replaced without the key: inherit true)
    driver.feed(global_change("resume", system={}), trade("u1", at=T0 + 1_000), tick(T0 + 1_250))

    # then the next group executes
    assert [a["decision"] for a in driver.attempts] == ["SKIP", "EXECUTE"]
    assert driver.attempts[-1]["configVersion"] == "resume"


def test_a_pause_applies_to_an_open_window_decided_after_it() -> None:
    # given a trade waiting in an open aggregation window
    driver = Driver(trade("u1", at=T0))
    assert driver.attempts == []

    # when the engine is paused before the window closes
    driver.feed(global_change(system={"copyEngineEnabled": False}), tick(T0 + 250))

    # then the group is decided with the config in force at decision time
    assert [a["reasonCodes"] for a in driver.attempts] == [["ENGINE_PAUSED"]]


def test_groups_decided_before_a_pause_are_unaffected() -> None:
    driver = Driver(trade("u1", at=T0), tick(T0 + 250))

    driver.feed(global_change(system={"copyEngineEnabled": False}))

    assert [a["decision"] for a in driver.attempts] == ["EXECUTE"]


def test_disabling_a_leader_skips_that_leaders_groups_only() -> None:
    # given u1 is disabled
    driver = Driver(user_change("u1", leader={"enabled": False}))

    # when u1 and u2 trade
    driver.feed(trade("u1", at=T0), trade("u2", at=T0), tick(T0 + 250))

    # then u1 is skipped USER_DISABLED and u2 executes
    decided = {a["followedUserId"]: (a["decision"], a["reasonCodes"]) for a in driver.attempts}
    assert decided == {"u1": ("SKIP", ["USER_DISABLED"]), "u2": ("EXECUTE", [])}


def test_reenabling_a_leader_by_replacing_its_leader_section_executes_again() -> None:
    driver = Driver(user_change("u1", leader={"enabled": False, "label": "One"}))
    driver.feed(trade("u1", at=T0), tick(T0 + 250))

    driver.feed(user_change("u1", leader={"label": "One"}), trade("u1", at=T0 + 1_000), tick(T0 + 1_250))

    assert [a["reasonCodes"] for a in driver.attempts] == [["USER_DISABLED"], []]


def test_the_engine_pause_outranks_a_disabled_leader() -> None:
    driver = Driver(
        global_change(system={"copyEngineEnabled": False}),
        user_change("u1", leader={"enabled": False}),
        trade("u1", at=T0),
        tick(T0 + 250),
    )

    assert [a["reasonCodes"] for a in driver.attempts] == [["ENGINE_PAUSED"]]


def test_a_user_sizing_override_changes_that_leaders_later_targets() -> None:
    driver = Driver(
        user_change("u1", sizing={"copyPctNotionalBps": 400}),
        trade("u1", at=T0, notional=100 * USD),
        trade("u2", at=T0, notional=100 * USD),
        tick(T0 + 250),
    )

    raw = {a["followedUserId"]: a["rawTargetMicros"] for a in driver.attempts}
    assert raw == {"u1": 4 * USD, "u2": 1 * USD}
