"""The wire contract (SPEC 3): input events and the copy-attempt output, as frozen pydantic models.

camelCase on the wire, snake_case in Python. Decoding is strict: JSON integers only (no ``true``,
no ``1.0``), ranges checked, unknown fields rejected. Fields typed "X or null" must be present; only
``eventTimeMs`` may be left out.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.alias_generators import to_camel

from models.units import INT64_MAX, MAX_TIME_MS, MICROS

Id = Annotated[str, Field(min_length=1, max_length=256)]  # Field: ~4x cheaper to check than StringConstraints
TimeMs = Annotated[int, Field(ge=0, le=MAX_TIME_MS)]
Micros = Annotated[int, Field(ge=0, le=INT64_MAX)]
PriceMicros = Annotated[int, Field(ge=1, le=MICROS)]
Side = Literal["BUY", "SELL"]
SourceType = Literal["AGGREGATOR", "IMMEDIATE", "BUFFER"]
Decision = Literal["EXECUTE", "SKIP"]
ExposureStatus = Literal["fresh", "missing", "stale", "derived"]
"""How E_u was found: a snapshot (fresh or stale), none (missing), or the shadow book (derived, SPEC 13.4)."""
ReportStatus = Literal["PARTIAL", "FILLED", "REJECTED", "CANCELLED"]
SizingMode = Literal["fixedRate", "budgetedDynamic"]
BudgetEnforcement = Literal["hard", "soft"]

GLOBAL_SNAPSHOT_KEY = "__global__"


class WireModel(BaseModel):
    """Base of every wire model: frozen, strict, camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        frozen=True,
        strict=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
    )


class LeaderTrade(WireModel):
    """A fill made by a followed trader (leader)."""

    kind: Literal["leaderTrade"]
    trade_id: Id
    followed_user_id: Id
    asset_id: Id
    market_id: Id | None
    side: Side
    price_micros: PriceMicros
    share_micros: Annotated[int, Field(gt=0, le=INT64_MAX)]
    notional_micros: Micros
    detect_time_ms: TimeMs
    event_time_ms: TimeMs | None = None


class PortfolioSnapshot(WireModel):
    """A mark-to-market snapshot of the leader's own book (SHADOW_USER) or of ours (EXEC_GLOBAL)."""

    kind: Literal["portfolioSnapshot"]
    portfolio_scope: Literal["SHADOW_USER", "EXEC_GLOBAL"]
    followed_user_id: Id | None
    bucket_time_ms: TimeMs
    exposure_micros: Micros
    equity_micros: Annotated[int, Field(ge=-INT64_MAX, le=INT64_MAX)] | None
    cash_micros: Annotated[int, Field(ge=-INT64_MAX, le=INT64_MAX)] | None

    @model_validator(mode="after")
    def _only_exec_global_may_be_whole(self) -> PortfolioSnapshot:
        if self.followed_user_id is None and self.portfolio_scope != "EXEC_GLOBAL":
            raise ValueError("followedUserId may be null only for an EXEC_GLOBAL snapshot")
        return self


class ConfigChange(WireModel):
    """A change of one scope's stored config documents; each section present replaces that section.

    Sections are kept as raw JSON values here: their keys, types and ranges are checked by
    :mod:`models.config`, which rejects a bad change whole with per-key errors.
    """

    kind: Literal["configChange"]
    change_id: Id
    scope: Literal["GLOBAL", "USER"]
    followed_user_id: Id | None
    changed_at_ms: TimeMs
    sizing: Any = None
    guardrails: Any = None
    buffering: Any = None
    system: Any = None
    leader: Any = None

    @model_validator(mode="after")
    def _scope_matches_leader(self) -> ConfigChange:
        if self.scope == "GLOBAL" and self.followed_user_id is not None:
            raise ValueError("a GLOBAL change must have followedUserId null")
        if self.scope == "USER" and self.followed_user_id is None:
            raise ValueError("a USER change needs a followedUserId")
        return self

    def sections(self) -> dict[str, Any]:
        """The sections present in the change (explicit nulls included, so they can be rejected)."""
        return {name: getattr(self, name) for name in SECTION_NAMES if name in self.model_fields_set}


SECTION_NAMES = ("sizing", "guardrails", "buffering", "system", "leader")


class Tick(WireModel):
    """Time passing: moves the partition clock to ``nowMs`` when that is later."""

    kind: Literal["tick"]
    now_ms: TimeMs


class MarketResolved(WireModel):
    """The venue settled an outcome token: each share pays ``payoutMicros`` (SPEC 13.2)."""

    kind: Literal["marketResolved"]
    asset_id: Id
    market_id: Id | None
    payout_micros: Annotated[int, Field(ge=0, le=MICROS)]
    resolved_at_ms: TimeMs
    """When the venue resolved it (information only: resolutions never move the clock)."""


class ExecutionReport(WireModel):
    """What the venue did with the order of one EXECUTE attempt, cumulative so far (SPEC 13.3)."""

    kind: Literal["executionReport"]
    report_id: Id
    attempt_id: Id
    followed_user_id: Id
    status: ReportStatus
    filled_share_micros: Micros
    filled_notional_micros: Micros
    """USDC paid (BUY) or received (SELL) so far."""
    reported_at_ms: TimeMs
    """Information only: reports never move the clock."""


AnyInputEvent = LeaderTrade | PortfolioSnapshot | ConfigChange | Tick | MarketResolved | ExecutionReport
InputEvent = Annotated[AnyInputEvent, Field(discriminator="kind")]
INPUT_EVENT: TypeAdapter[AnyInputEvent] = TypeAdapter(InputEvent)
"""Decodes any input event from JSON bytes: ``INPUT_EVENT.validate_json(raw)``."""


# --- outputs -------------------------------------------------------------------------------------


class AttemptSizing(WireModel):
    """How the target was sized: the mode, the rate r_u and which clamps bound it."""

    sizing_mode: SizingMode
    budgeted_dynamic_enabled: bool
    budgeted_dynamic_active: bool
    budget_enforcement: BudgetEnforcement
    budget_usdc_micros: int
    leader_exposure_micros: int | None
    leader_exposure_status: ExposureStatus
    r_u: float = Field(alias="rU")
    effective_rate_bps: int
    clamped_to_r_min: bool
    clamped_to_r_max: bool
    clamped_to_min: bool
    clamped_to_max: bool
    clamped_by_bankroll: bool
    equity_micros: int


class AttemptBudget(WireModel):
    """Our exposure attributed to the leader when deciding, and the HARD budget's headroom."""

    current_exposure_micros: int
    """Our exposure attributed to the leader plus its BUY reservations (SPEC 13.3.2)."""
    headroom_micros: int | None
    capped: bool
    reducing: bool
    reserved_micros: int = 0
    """Σ BUY reservations of the leader's open orders before the decision (0 without orders; the
    default reads attempts recorded before the field existed)."""


class CopyAttempt(WireModel):
    """The decision for one group of leader trades (SPEC 3 ``copyAttempt``)."""

    kind: Literal["copyAttempt"] = "copyAttempt"
    attempt_id: str
    followed_user_id: str
    group_key: str
    asset_id: str
    market_id: str | None
    side: Side
    source_type: SourceType
    trade_ids: list[str]
    buffered_trade_count: int
    decision: Decision
    reason_codes: list[str]
    their_notional_micros: int
    their_reference_price_micros: int
    raw_target_micros: int
    target_notional_micros: int
    target_share_micros: int
    decided_at_ms: int
    sizing: AttemptSizing
    budget: AttemptBudget
    config_version: str | None


class ConfigRejected(WireModel):
    """A well-formed config change that broke a rule; the previous config stays in force."""

    kind: Literal["configRejected"] = "configRejected"
    change_id: str
    errors: tuple[str, ...]


class ConfigWarning(WireModel):
    """An accepted config change from which keys were dropped (e.g. a per-leader kill switch)."""

    kind: Literal["configWarning"] = "configWarning"
    change_id: str
    warnings: tuple[str, ...]


class PositionSettled(WireModel):
    """Our position of a leader in a resolved asset, paid out at settlement (SPEC 13.5)."""

    kind: Literal["positionSettled"] = "positionSettled"
    followed_user_id: str
    settlement_id: str
    """UUIDv5 (URL namespace) of ``SETTLE|{followedUserId}|{assetId}``."""
    asset_id: str
    market_id: str | None
    share_micros: int
    payout_micros: int
    proceeds_micros: int
    cost_basis_micros: int
    realized_pnl_micros: int
    settled_at_ms: int
    config_version: str | None


class OrderExpired(WireModel):
    """An order closed without a final report: timed out, or its market resolved (SPEC 13.3, 13.5)."""

    kind: Literal["orderExpired"] = "orderExpired"
    followed_user_id: str
    attempt_id: str
    asset_id: str
    side: Side
    target_share_micros: int
    filled_share_micros: int
    filled_notional_micros: int
    expired_at_ms: int
    config_version: str | None


BookPosition = dict[str, Any]
"""One held asset in a leader's book, in wire shape: ``{assetId: str, shareMicros: int, markPriceMicros: int,
costBasisMicros: int}``. A plain dict, not validated field by field: books are output every bookIntervalMs
per changed leader and are built by the core from typed state (a model per position cost a fifth of the
default replay, a typed union per value a tenth)."""


class LeaderBook(WireModel):
    """Our book attributed to one leader as of the clock: exposure, reservations, cost and PnL (SPEC 13.5)."""

    kind: Literal["leaderBook"] = "leaderBook"
    followed_user_id: str
    as_of_ms: int
    exposure_micros: int
    reserved_micros: int
    """Σ of the open BUY reservations."""
    cost_basis_micros: int
    realized_pnl_micros: int
    unrealized_pnl_micros: int
    """exposure − cost basis."""
    leader_exposure_micros: int | None
    leader_exposure_status: ExposureStatus
    positions: list[BookPosition]
    """Held assets (shares > 0), sorted by assetId."""
    config_version: str | None


class WireOutput:
    """An output the core builds as its wire dict, wrapped (a bare dict among the outputs is an attempt):
    ``wire`` is exactly the JSON object of the model the subclass names, which consumers validate it
    against. The frequent outputs are built so: validating the model and serialising it cost ten times
    as much."""

    __slots__ = ("wire",)

    def __init__(self, wire: dict[str, Any]) -> None:
        self.wire = wire

    @property
    def followed_user_id(self) -> str:
        return str(self.wire["followedUserId"])

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.wire == self.wire

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.wire!r})"


class LeaderBookWire(WireOutput):
    """A leaderBook as the core emits it (every bookIntervalMs per changed leader): the JSON object of
    :class:`LeaderBook`."""

    __slots__ = ()
    kind: Final = "leaderBook"


OrderStatus = Literal["OPEN", "FILLED", "REJECTED", "CANCELLED", "EXPIRED"]
"""OPEN until closed; FILLED, REJECTED or CANCELLED by the first closing report; EXPIRED by a timeout or a
resolution of its market (SPEC 13.3). A closed order keeps the status that closed it."""
CloseReason = Literal["REPORT", "TIMEOUT", "MARKET_RESOLVED"]


class OrderUpdated(WireModel):
    """An order's state after the core changed it (not in the SPEC; docs/decisions.md 38): opened by an
    EXECUTE in reports mode, a report applied, expired. `revision` counts the changes (1 when opened)."""

    kind: Literal["orderUpdated"] = "orderUpdated"
    followed_user_id: str
    attempt_id: str
    revision: int
    asset_id: str
    side: Side
    status: OrderStatus
    close_reason: CloseReason | None
    target_share_micros: int
    target_notional_micros: int
    reference_price_micros: int
    """The attempt's theirReferencePriceMicros."""
    filled_share_micros: int
    filled_notional_micros: int
    reserved_micros: int
    """What the order still reserves: USDC for a BUY, shares for a SELL (0 once closed)."""
    last_report_id: str | None
    """The last report applied to the order."""
    opened_at_ms: int
    updated_at_ms: int
    closed_at_ms: int | None
    config_version: str | None


class OrderUpdatedWire(WireOutput):
    """An orderUpdated as the core emits it: the JSON object of :class:`OrderUpdated`."""

    __slots__ = ()
    kind: Final = "orderUpdated"


class ExecutionReportIgnored(WireModel):
    """A report that changed nothing, and why (a diagnostic, reported once per report)."""

    kind: Literal["executionReportIgnored"] = "executionReportIgnored"
    report_id: str
    attempt_id: str
    reason: str


class DeadLetter(WireModel):
    """An input that could not be decoded or validated, with the raw value and the reason."""

    kind: Literal["deadLetter"] = "deadLetter"
    source_topic: str
    partition: int
    offset: int
    key: str | None
    value: str
    error: str
    at_ms: int


# The hot path emits attempts as plain dicts in wire shape: building and dumping a dict is about
# eight times cheaper than constructing the pydantic model. `CopyAttempt` above is the contract that
# consumers (and the tests) validate those dicts against.


class SizingWire(TypedDict):
    sizingMode: SizingMode
    budgetedDynamicEnabled: bool
    budgetedDynamicActive: bool
    budgetEnforcement: BudgetEnforcement
    budgetUsdcMicros: int
    leaderExposureMicros: int | None
    leaderExposureStatus: ExposureStatus
    rU: float
    effectiveRateBps: int
    clampedToRMin: bool
    clampedToRMax: bool
    clampedToMin: bool
    clampedToMax: bool
    clampedByBankroll: bool
    equityMicros: int


class BudgetWire(TypedDict):
    currentExposureMicros: int
    headroomMicros: int | None
    capped: bool
    reducing: bool
    reservedMicros: int


class CopyAttemptWire(TypedDict):
    kind: Literal["copyAttempt"]
    attemptId: str
    followedUserId: str
    groupKey: str
    assetId: str
    marketId: str | None
    side: Side
    sourceType: SourceType
    tradeIds: list[str]
    bufferedTradeCount: int
    decision: Decision
    reasonCodes: list[str]
    theirNotionalMicros: int
    theirReferencePriceMicros: int
    rawTargetMicros: int
    targetNotionalMicros: int
    targetShareMicros: int
    decidedAtMs: int
    sizing: SizingWire
    budget: BudgetWire
    configVersion: str | None


"""A copy attempt as the core emits it: exactly the JSON object of SPEC 3 ``copyAttempt``."""

Output = (
    CopyAttemptWire
    | ConfigRejected
    | ConfigWarning
    | PositionSettled
    | OrderExpired
    | LeaderBookWire
    | OrderUpdatedWire
    | ExecutionReportIgnored
)
"""Everything the core emits. Attempts are wire dicts, leaderBooks and orderUpdates wrapped ones; the others
are models."""

BOOK_EVENT_KINDS = frozenset({"positionSettled", "orderExpired", "leaderBook", "orderUpdated"})
"""Output kinds that go with the attempts in replay's stdout (live: ``copybot.book-events``)."""
