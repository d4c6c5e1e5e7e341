"""The integrator's contract of the HTTP API: request and response models, and the config documents.

The config document and edit models are generated from :data:`models.config.RULES`, the rules the worker
validates every change with, so the OpenAPI document, the JSON Schemas under ``docs/schemas/`` and the
validation can never disagree on a key, a type or a range. Rules that span keys (r_min ≤ r_max, a budget
> 0 while Budgeted Dynamic is active, …) cannot be written in a schema: a schema-valid edit that breaks
one is answered ``422`` with the same per-key errors as ``copybot config set-*``.

Every error of the API has one shape, :class:`Errors`: ``{"errors": ["section.key: what is wrong", …]}``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic.alias_generators import to_camel, to_snake
from typing_extensions import TypedDict

from models import events
from models.config import GLOBAL_ONLY_SIZING_KEY, RULES, SECTIONS_OF_SCOPE, EffectiveConfig, KeyRule, Scope
from models.events import CopyAttempt, PositionSettled

_TypedDict = cast(Any, TypedDict)  # the functional form, with keys computed from RULES


def _value_type(rule: KeyRule) -> Any:
    """The JSON type of a config key's value, with the rule's range or choices."""
    if rule.type == "int":
        return Annotated[int, Field(ge=rule.ge, le=rule.le)]
    if rule.type == "bool":
        return bool
    if rule.type == "enum":
        return Literal[rule.choices]
    return Annotated[str, Field(min_length=1, max_length=200)]


def _section_model(scope: Scope, section: str, suffix: str, nullable: bool) -> Any:
    values = {}
    for key, rule in RULES[section].items():
        value = _value_type(rule) | None if nullable else _value_type(rule)
        values[key] = Annotated[value, Field(title=f"{section}.{key}")]
    if scope == "USER" and section == "sizing" and nullable:
        # The worker drops a USER kill switch with a warning whatever its value (SPEC 2.5)
        values[GLOBAL_ONLY_SIZING_KEY] = Annotated[
            Any,
            Field(title="sizing.budgetedDynamicEnabled", description="GLOBAL only: dropped with a warning"),
        ]
    name = f"{section.title()}{suffix}" if scope == "GLOBAL" or section != "sizing" else f"UserSizing{suffix}"
    model = _TypedDict(name, values, total=False)
    extra: dict[str, Any] = {"minProperties": 1} if nullable else {}
    model.__pydantic_config__ = ConfigDict(extra="forbid", json_schema_extra=extra)
    return model


def _scope_model(scope: Scope, suffix: str, nullable: bool, example: dict[str, Any]) -> Any:
    sections = {name: _section_model(scope, name, suffix, nullable) for name in SECTIONS_OF_SCOPE[scope]}
    model = _TypedDict(f"{scope.title()}Config{suffix}s", sections, total=False)
    extra: dict[str, Any] = {"examples": [example]}
    if nullable:
        extra["minProperties"] = 1
    model.__pydantic_config__ = ConfigDict(extra="forbid", json_schema_extra=extra)
    return model


GlobalConfigDocuments = _scope_model(
    "GLOBAL", "Document", False, {"sizing": {"budgetedDynamicEnabled": True, "sizingMode": "budgetedDynamic"}}
)
"""The stored GLOBAL documents: only the keys an operator set (an absent key has its default)."""
UserConfigDocuments = _scope_model(
    "USER", "Document", False, {"sizing": {"budgetUsdcMicros": 30_000_000}, "leader": {"label": "Whale"}}
)
"""A leader's stored USER documents: only its overrides (an absent key inherits GLOBAL)."""
GlobalConfigEdits = _scope_model(
    "GLOBAL", "Edit", True, {"sizing": {"budgetUsdcMicros": 60_000_000, "budgetRMaxBps": 50}}
)
"""A POST body: ``section.key`` values to set; ``null`` removes the key (it then has its default)."""
UserConfigEdits = _scope_model(
    "USER",
    "Edit",
    True,
    {
        "sizing": {"budgetUsdcMicros": 30_000_000, "minLeaderTradeNotionalMicros": None},
        "leader": {"label": "W"},
    },
)
"""A POST body: ``section.key`` values to set; ``null`` removes the override (it then inherits)."""

EDITS_OF_SCOPE: dict[Scope, Any] = {"GLOBAL": GlobalConfigEdits, "USER": UserConfigEdits}
DOCUMENTS_OF_SCOPE: dict[Scope, Any] = {"GLOBAL": GlobalConfigDocuments, "USER": UserConfigDocuments}


def _plain_type(rule: KeyRule) -> Any:
    """A config key's value type as :class:`models.config.EffectiveConfig` declares it."""
    base: Any = {"int": int, "bool": bool, "str": str}.get(rule.type) or Literal[rule.choices]
    return base | None if rule.optional else base


_KEY_TYPES: dict[str, Any] = {
    f"{section}_enabled" if key == "enabled" else to_snake(key): _plain_type(rule)
    for section, rules in RULES.items()
    for key, rule in rules.items()
}
"""EffectiveConfig field -> its type, from the key rules: the compiled core (mypyc) keeps no annotations."""
_DERIVED_TYPES: dict[str, Any] = {"budgeted_dynamic_active": bool, "hard_budget": bool}
_EFFECTIVE_FIELDS: dict[str, Any] = {
    to_camel(f.name): ({**_KEY_TYPES, **_DERIVED_TYPES}[f.name], ...) for f in fields(EffectiveConfig)
}
EffectiveConfigJson: type[BaseModel] = create_model(
    "EffectiveConfig",
    __config__=ConfigDict(extra="forbid"),
    __doc__="An effective config (defaults < GLOBAL < USER), every key flattened, camelCase.",
    **_EFFECTIVE_FIELDS,
)


def schema_of(model: Any, ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """The JSON Schema of a model or TypedDict, as it is validated (camelCase aliases)."""
    return TypeAdapter(model).json_schema(by_alias=True, ref_template=ref_template)


# --- responses --------------------------------------------------------------------------------------


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Errors(ApiModel):
    """Every error the API answers (4xx and 5xx): one message per problem, ``section.key: why`` when a
    config key is at fault."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"errors": ["sizing.budgetRMinBps: must be ≤ budgetRMaxBps"]}]}
    )

    errors: list[str] = Field(min_length=1)


class Health(ApiModel):
    status: Literal["ok"]


class SummaryItem(ApiModel):
    """One leader of the budget summary (money in USDC, rates and utilization in %)."""

    id: str
    label: str
    sizingMode: Literal["fixedRate", "budgetedDynamic"]
    budgetedDynamicActive: bool
    budgetUsdc: float = Field(description="B_u")
    budgetEnforcement: Literal["hard", "soft"]
    rMin: float = Field(description="r_min in %")
    rMax: float = Field(description="r_max in %")
    leaderExposureUsdc: float | None = Field(description="E_u from the newest SHADOW_USER snapshot")
    leaderExposureStatus: str | None = Field(description="fresh, stale or missing at the last attempt")
    execExposureUsdc: float = Field(description="our exposure attributed to the leader (live estimate)")
    execSliceExposureUsdc: float | None = Field(description="from the newest EXEC_GLOBAL slice snapshot")
    rU: float | None = Field(description="r_u of the last attempt, in %")
    budgetHeadroomUsdc: float | None = Field(description="B_u − our exposure while HARD enforcement applies")
    utilizationPct: float | None = Field(description="our exposure / B_u in %, null when B_u = 0")
    attempts: int
    executed: int
    skipped: int
    trades: int
    lastDecidedAtMs: int | None
    realizedPnlUsdc: float = Field(description="realized PnL of what we copied (latest leaderBook)")
    unrealizedPnlUsdc: float = Field(description="our exposure − cost basis (latest leaderBook)")
    costBasisUsdc: float
    reservedUsdc: float = Field(description="Σ BUY reservations of the open orders (latest leaderBook)")
    openOrders: int
    bookAsOfMs: int | None = Field(description="asOfMs of the latest leaderBook")


class ExposurePoint(ApiModel):
    t: int = Field(description="decidedAtMs")
    execExposureUsdc: float = Field(description="our exposure just after the decision")
    budgetUsdc: float = Field(description="B_u in force at the decision")


class PnlPoint(ApiModel):
    t: int = Field(description="asOfMs of a leaderBook")
    realizedPnlUsdc: float
    unrealizedPnlUsdc: float
    pnlUsdc: float = Field(description="realized + unrealized")


class ModeChange(ApiModel):
    """A decision under another kill switch, sizing mode or enforcement than the leader's previous one."""

    t: int = Field(description="decidedAtMs of the first decision under the new mode")
    killSwitch: bool = Field(description="the GLOBAL kill switch (budgetedDynamicEnabled) flipped")
    budgetedDynamicEnabled: bool
    sizingMode: Literal["fixedRate", "budgetedDynamic"]
    budgetedDynamicActive: bool
    budgetEnforcement: Literal["hard", "soft"]
    configVersion: str | None = Field(description="the config change in force from then on")
    changeScope: Literal["GLOBAL", "USER"] | None
    changedAtMs: int | None


class Order(ApiModel):
    """An EXECUTE decided under ``fillModel: reports`` and what the venue did with it (SPEC 13.3), as the
    core's newest orderUpdated output gives it."""

    attemptId: str
    followedUserId: str
    assetId: str
    marketId: str | None
    side: Literal["BUY", "SELL"]
    status: Literal["OPEN", "FILLED", "REJECTED", "CANCELLED", "EXPIRED"]
    closeReason: Literal["REPORT", "TIMEOUT", "MARKET_RESOLVED"] | None = Field(
        description="what closed it: a report (status says which), its timeout, its market's resolution"
    )
    openedAtMs: int = Field(description="decidedAtMs of the attempt")
    updatedAtMs: int = Field(description="the partition clock at the order's last change")
    closedAtMs: int | None
    expiredAtMs: int | None = Field(description="closedAtMs when EXPIRED")
    targetShareMicros: int
    targetNotionalMicros: int
    filledShareMicros: int
    filledNotionalMicros: int
    reservedMicros: int = Field(description="what it still reserves: USDC for a BUY, shares for a SELL")
    fillRatio: float | None = Field(description="filled / target shares; null when the target is 0")
    averageFillPriceMicros: int | None = Field(description="floor(filled notional × 10^6 / filled shares)")
    referencePriceMicros: int = Field(description="the attempt's theirReferencePriceMicros")
    priceVsReferenceBps: float | None = Field(description="(average fill − reference) / reference in bps")
    lastReportId: str | None = Field(description="the last report the core applied")
    revision: int = Field(description="how many times the core changed the order (1 when opened)")


class Position(ApiModel):
    """A held asset of the leader's latest leaderBook, valued at its mark."""

    followedUserId: str
    assetId: str
    marketId: str | None
    shareMicros: int
    markPriceMicros: int
    costBasisMicros: int
    valueMicros: int = Field(description="floor(shares × mark / 10^6)")
    unrealizedPnlMicros: int = Field(description="value − cost basis")
    asOfMs: int


class UserDetail(ApiModel):
    summary: SummaryItem
    recentAttempts: list[CopyAttempt] = Field(description="newest first, as emitted")
    skipReasons: dict[str, int] = Field(description="SKIP reason code → count, most frequent first")
    clamps: dict[str, int] = Field(description="rMin, rMax, min, max, bankroll, hardCap → count")
    exposureHistory: list[ExposurePoint] = Field(description="oldest first, at most 400 points")
    modeChanges: list[ModeChange] = Field(description="oldest first")
    pnlHistory: list[PnlPoint] = Field(
        description="oldest first, about 400 books evenly spaced, the newest kept"
    )
    positions: list[Position]
    orders: list[Order] = Field(description="the 25 newest")
    settlements: list[PositionSettled] = Field(description="newest first, as emitted")


class AttemptPage(ApiModel):
    total: int = Field(description="attempts matching the filters (all pages)")
    limit: int
    offset: int | None = Field(description="null when paging by cursor")
    nextCursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")
    items: list[CopyAttempt] = Field(description="newest first (decidedAtMs, then attemptId, descending)")


def _config_view(scope: Scope) -> type[BaseModel]:
    fields_: dict[str, Any] = {
        "scope": (Literal[scope], ...),
        "configVersion": (str | None, Field(description="changeId of the newest accepted change")),
        "sections": (DOCUMENTS_OF_SCOPE[scope], Field(description="the stored documents of this scope")),
        "effective": (EffectiveConfigJson, ...),
    }
    if scope == "USER":
        fields_["followedUserId"] = (str, ...)
        fields_["inherited"] = (EffectiveConfigJson, Field(description="the GLOBAL effective config"))
    return create_model(f"{scope.title()}ConfigView", __base__=ApiModel, **fields_)


GlobalConfigView = _config_view("GLOBAL")
UserConfigView = _config_view("USER")


class ChangePublished(ApiModel):
    """An accepted change, published to config-changes (the worker applies it when it reads it)."""

    changeId: str
    warnings: list[str] = Field(description="keys dropped from the change, e.g. a USER kill switch")
    publishedAt: str | None = Field(description="topic:partition:offset")


# --- JSON Schemas of the wire events and the config documents (``copybot schema``) ------------------

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def wire_event_models() -> dict[str, type[BaseModel]]:
    """Every event kind on the wire (inputs, outputs, diagnostics) and its model in :mod:`models.events`."""
    found: dict[str, type[BaseModel]] = {}
    for value in vars(events).values():
        if isinstance(value, type) and issubclass(value, events.WireModel) and "kind" in value.model_fields:
            (kind,) = get_args(value.model_fields["kind"].annotation)
            found[kind] = value
    return dict(sorted(found.items()))


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema: each wire event kind, the config documents and the API's config edits."""
    schemas: dict[str, Any] = {f"{kind}.json": model for kind, model in wire_event_models().items()}
    schemas |= {
        "config-global-documents.json": GlobalConfigDocuments,
        "config-user-documents.json": UserConfigDocuments,
        "config-global-edits.json": GlobalConfigEdits,
        "config-user-edits.json": UserConfigEdits,
    }
    return {name: {"$schema": JSON_SCHEMA_DIALECT, **schema_of(model)} for name, model in schemas.items()}
