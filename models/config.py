"""Configuration (SPEC 2): the four sections, defaults, inheritance, the kill switch and validation.

Stored documents hold only the keys an operator set. The effective config of leader u is the
defaults, overlaid by the GLOBAL documents, overlaid by u's USER documents ("key absent = inherit").
A change is validated against every effective config it would produce and is accepted or rejected
whole; a rejected change leaves the previous config in force.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pydantic.alias_generators import to_snake

from models.events import BudgetEnforcement, ConfigChange, SizingMode
from models.units import INT64_MAX, MICROS

Scope = Literal["GLOBAL", "USER"]
Json = Any
Doc = dict[str, Json]
Docs = dict[str, Doc]


@dataclass(frozen=True, slots=True)
class KeyRule:
    """Type, range and default of one config key."""

    type: Literal["int", "bool", "enum", "str"]
    default: Json
    ge: int = 0
    le: int = INT64_MAX
    choices: tuple[str, ...] = ()
    optional: bool = False
    """The key may be absent from the effective config (the feature is then off)."""

    def check(self, value: Json) -> str | None:
        """An error message when `value` breaks this rule, else None."""
        if self.type == "int":
            if type(value) is not int:
                return f"expected an integer, got {_show(value)}"
            if value < self.ge:
                return f"must be ≥ {self.ge:,} (got {value:,})"
            if value > self.le:
                return f"must be ≤ {self.le:,} (got {value:,})"
        elif self.type == "bool":
            if type(value) is not bool:
                return f"expected true or false, got {_show(value)}"
        elif self.type == "enum":
            if value not in self.choices or type(value) is not str:
                return f"expected one of {', '.join(map(repr, self.choices))}, got {_show(value)}"
        elif self.type == "str" and (type(value) is not str or not 1 <= len(value) <= 200):
            return f"expected a string of 1 to 200 characters, got {_show(value)}"
        return None


def _show(value: Json) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


RULES: dict[str, dict[str, KeyRule]] = {
    "sizing": {
        "copyPctNotionalBps": KeyRule("int", 100),
        "minTradeNotionalMicros": KeyRule("int", 5_000_000),
        "maxTradeNotionalMicros": KeyRule("int", 250_000_000),
        "maxTradeBankrollBps": KeyRule("int", 75),
        "sizingMode": KeyRule("enum", "fixedRate", choices=("fixedRate", "budgetedDynamic")),
        "budgetedDynamicEnabled": KeyRule("bool", False),
        "budgetUsdcMicros": KeyRule("int", 0),
        "budgetRMinBps": KeyRule("int", 0),
        "budgetRMaxBps": KeyRule("int", 100),
        "budgetEnforcement": KeyRule("enum", "hard", choices=("hard", "soft")),
        "minLeaderTradeNotionalMicros": KeyRule("int", 0),
        "leaderExposureSource": KeyRule(
            "enum", "snapshot", choices=("snapshot", "shadowBook", "snapshotElseShadowBook")
        ),
    },
    "guardrails": {
        "maxBuyCostPerShareMicros": KeyRule("int", None, le=MICROS, optional=True),
        "maxExposurePerUserBps": KeyRule("int", 2_000),
    },
    "buffering": {
        "enabled": KeyRule("bool", False),
        "notionalThresholdMicros": KeyRule("int", 250_000),
        "flushMinNotionalMicros": KeyRule("int", 500_000),
        "minExecNotionalMicros": KeyRule("int", 100_000),
        "maxBufferMs": KeyRule("int", 2_500, ge=100),
        "quietFlushMs": KeyRule("int", 600, ge=50),
        "nettingMode": KeyRule("enum", "sameSideOnly", choices=("sameSideOnly", "netBuySell")),
    },
    "system": {
        "copyEngineEnabled": KeyRule("bool", True),
        "aggregationWindowMs": KeyRule("int", 250, le=60_000),
        "initialBankrollMicros": KeyRule("int", 10_000_000_000),
        "leaderExposureMaxAgeMs": KeyRule("int", 3_600_000),
        "dedupWindowMs": KeyRule("int", 86_400_000, ge=60_000),
        "fillModel": KeyRule("enum", "paper", choices=("paper", "reports")),
        "orderTimeoutMs": KeyRule("int", 60_000, ge=1_000, le=86_400_000),
        "bookIntervalMs": KeyRule("int", 1_000, le=3_600_000),
    },
    "leader": {
        "enabled": KeyRule("bool", True),
        "label": KeyRule("str", None, optional=True),
    },
}
"""Every config key (camelCase, a public contract) with its rule and default (SPEC 2.1–2.4)."""

SECTIONS_OF_SCOPE: dict[Scope, tuple[str, ...]] = {
    "GLOBAL": ("sizing", "guardrails", "buffering", "system"),
    "USER": ("sizing", "guardrails", "leader"),
}
GLOBAL_ONLY_SIZING_KEY = "budgetedDynamicEnabled"


@dataclass(frozen=True, slots=True)
class EffectiveConfig:
    """Everything that decides a leader's groups: defaults < GLOBAL < USER, flattened."""

    copy_pct_notional_bps: int
    min_trade_notional_micros: int
    max_trade_notional_micros: int
    max_trade_bankroll_bps: int
    sizing_mode: SizingMode
    budgeted_dynamic_enabled: bool
    budget_usdc_micros: int
    budget_r_min_bps: int
    budget_r_max_bps: int
    budget_enforcement: BudgetEnforcement
    min_leader_trade_notional_micros: int
    leader_exposure_source: Literal["snapshot", "shadowBook", "snapshotElseShadowBook"]
    max_buy_cost_per_share_micros: int | None
    max_exposure_per_user_bps: int
    buffering_enabled: bool
    notional_threshold_micros: int
    flush_min_notional_micros: int
    min_exec_notional_micros: int
    max_buffer_ms: int
    quiet_flush_ms: int
    netting_mode: Literal["sameSideOnly", "netBuySell"]
    copy_engine_enabled: bool
    aggregation_window_ms: int
    initial_bankroll_micros: int
    leader_exposure_max_age_ms: int
    dedup_window_ms: int
    fill_model: Literal["paper", "reports"]
    order_timeout_ms: int
    book_interval_ms: int
    leader_enabled: bool
    label: str | None
    budgeted_dynamic_active: bool
    """Budgeted Dynamic sizing applies: the GLOBAL kill switch is on and the mode selects it."""
    hard_budget: bool
    """The HARD budget cap applies (Budgeted Dynamic active with hard enforcement)."""


_FIELDS: tuple[tuple[str, str, str, bool], ...] = tuple(
    (
        section,
        key,
        f"{section}_enabled" if key == "enabled" else to_snake(key),
        rule.optional,
    )
    for section, rules in RULES.items()
    for key, rule in rules.items()
)
"""(section, key, :class:`EffectiveConfig` field, optional) of every key of :data:`RULES`: the field is the
key in snake_case, ``enabled`` prefixed with its section (``buffering_enabled``, ``leader_enabled``)."""


def _flatten(merged: Docs) -> EffectiveConfig:
    values: dict[str, Json] = {
        name: merged[section].get(key) if optional else merged[section][key]
        for section, key, name, optional in _FIELDS
    }
    active = values["budgeted_dynamic_enabled"] and values["sizing_mode"] == "budgetedDynamic"
    hard = active and values["budget_enforcement"] == "hard"
    return EffectiveConfig(**values, budgeted_dynamic_active=active, hard_budget=hard)


def _defaults() -> Docs:
    return {
        section: {key: rule.default for key, rule in rules.items() if not rule.optional}
        for section, rules in RULES.items()
    }


def _overlay(base: Docs, docs: Docs) -> Docs:
    return {section: {**values, **docs.get(section, {})} for section, values in base.items()}


def merge_effective(global_docs: Docs, user_docs: Docs | None) -> EffectiveConfig:
    """The effective config for a leader with `user_docs` (None: the GLOBAL-effective config)."""
    merged = _overlay(_defaults(), global_docs)
    if user_docs is not None:
        merged = _overlay(merged, user_docs)
        # The kill switch is read from GLOBAL only, whatever a USER document says.
        merged["sizing"][GLOBAL_ONLY_SIZING_KEY] = _overlay(_defaults(), global_docs)["sizing"][
            GLOBAL_ONLY_SIZING_KEY
        ]
    return _flatten(merged)


def cross_field_errors(cfg: EffectiveConfig) -> list[str]:
    """Rules that span keys, checked on an effective config (SPEC 2.5)."""
    errors = []
    if cfg.budget_r_min_bps > cfg.budget_r_max_bps:
        errors.append(
            f"sizing.budgetRMinBps: must be ≤ budgetRMaxBps "
            f"({cfg.budget_r_min_bps:,} > {cfg.budget_r_max_bps:,})"
        )
    if cfg.min_trade_notional_micros > cfg.max_trade_notional_micros:
        errors.append(
            f"sizing.maxTradeNotionalMicros: must be ≥ minTradeNotionalMicros "
            f"({cfg.max_trade_notional_micros:,} < {cfg.min_trade_notional_micros:,})"
        )
    if cfg.budgeted_dynamic_active and cfg.budget_usdc_micros <= 0:
        errors.append("sizing.budgetUsdcMicros: must be > 0 while Budgeted Dynamic is active for this leader")
    return errors


@dataclass(frozen=True, slots=True)
class ConfigStore:
    """The stored documents of every scope, the newest accepted change id, and the effective configs."""

    global_docs: Docs = field(default_factory=dict)
    user_docs: MappingProxyType[str, Docs] = field(default_factory=lambda: MappingProxyType({}))
    version: str | None = None
    global_effective: EffectiveConfig = field(default_factory=lambda: merge_effective({}, None))
    user_effective: MappingProxyType[str, EffectiveConfig] = field(
        default_factory=lambda: MappingProxyType({})
    )
    applied: frozenset[str] = frozenset()
    """changeIds of every accepted change: a change delivered twice is applied once."""

    def for_leader(self, leader_id: str) -> EffectiveConfig:
        """The effective config of `leader_id` (the GLOBAL-effective one when it has no USER documents)."""
        return self.user_effective.get(leader_id, self.global_effective)

    def to_json(self) -> dict[str, Json]:
        """The stored documents as plain JSON (effective configs are derived again on load)."""
        return {
            "global": self.global_docs,
            "users": dict(self.user_docs),
            "version": self.version,
            "applied": sorted(self.applied),
        }

    @classmethod
    def from_json(cls, data: dict[str, Json]) -> ConfigStore:
        """Rebuild a store saved with :meth:`to_json`."""
        return _build(data["global"], dict(data["users"]), data["version"], frozenset(data["applied"]))


def _build(
    global_docs: Docs, user_docs: dict[str, Docs], version: str | None, applied: frozenset[str]
) -> ConfigStore:
    return ConfigStore(
        global_docs=global_docs,
        user_docs=MappingProxyType(user_docs),
        version=version,
        applied=applied,
        global_effective=merge_effective(global_docs, None),
        user_effective=MappingProxyType({u: merge_effective(global_docs, d) for u, d in user_docs.items()}),
    )


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    """The result of validating a change: the new store when accepted, or the errors when rejected."""

    store: ConfigStore | None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    duplicate: bool = False
    """The change was accepted before (a redelivery): nothing to apply and nothing to report."""

    @property
    def accepted(self) -> bool:
        return self.store is not None


def _check_sections(change: ConfigChange) -> tuple[Docs, list[str], list[str]]:
    """Per-key checks of the sections a change carries: (clean documents, errors, warnings)."""
    docs: Docs = {}
    errors: list[str] = []
    warnings: list[str] = []
    allowed = SECTIONS_OF_SCOPE[change.scope]
    for section, raw in change.sections().items():
        if section not in allowed:
            errors.append(f"{section}: section not allowed in a {change.scope} change")
            continue
        if not isinstance(raw, dict):
            errors.append(f"{section}: expected an object, got {_show(raw)}")
            continue
        doc: Doc = {}
        for key, value in raw.items():
            rule = RULES[section].get(key)
            if rule is None:
                errors.append(f"{section}.{key}: unknown key")
                continue
            if change.scope == "USER" and section == "sizing" and key == GLOBAL_ONLY_SIZING_KEY:
                warnings.append(
                    f"sizing.{key}: ignored in a USER change (the kill switch is GLOBAL only); dropped"
                )
                continue
            problem = rule.check(value)
            if problem is not None:
                if value is None and rule.optional:
                    problem = "may not be null (leave the key out to inherit)"
                errors.append(f"{section}.{key}: {problem}")
                continue
            doc[key] = value
        docs[section] = doc
    return docs, errors, warnings


def apply_change(store: ConfigStore, change: ConfigChange) -> ChangeOutcome:
    """Validate `change` against every effective config it affects; accept or reject it whole."""
    if change.change_id in store.applied:
        return ChangeOutcome(store, duplicate=True)
    # Cross-field rules are checked on the keys that passed, so one report names every problem.
    docs, errors, warnings = _check_sections(change)
    global_docs = dict(store.global_docs)
    user_docs = dict(store.user_docs)
    if change.scope == "GLOBAL":
        global_docs.update(docs)
    else:
        assert change.followed_user_id is not None  # guaranteed by ConfigChange's validator
        user_docs[change.followed_user_id] = {**user_docs.get(change.followed_user_id, {}), **docs}
    new_store = _build(global_docs, user_docs, change.change_id, store.applied | {change.change_id})
    if change.scope == "GLOBAL":
        errors.extend(cross_field_errors(new_store.global_effective))
        checked = sorted(new_store.user_effective)
    else:
        checked = [change.followed_user_id] if change.followed_user_id else []
    for leader_id in checked:
        errors.extend(f"leader {leader_id}: {e}" for e in cross_field_errors(new_store.for_leader(leader_id)))
    if errors:
        return ChangeOutcome(None, tuple(errors), tuple(warnings))
    return ChangeOutcome(new_store, (), tuple(warnings))
