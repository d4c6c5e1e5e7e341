"""Polymarket rows -> copybot events (SPEC 14). Pure: no IO, no clock (times come in as arguments).

Numbers are taken as exact decimals: the HTTP layer parses JSON numbers with ``parse_float=Decimal``, and a
number sent as a string (``"0.42"``) is read with ``Decimal`` too, so ``0.1 + 0.2`` never becomes
``0.30000000000000004`` micros. ``round`` means round-half-even (Python's ``round``) at the micro.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from models.events import LeaderTrade, MarketResolved, PortfolioSnapshot
from streams.serde import describe_validation_error

MICROS = Decimal(1_000_000)
MAX_EPOCH_SECONDS = 100_000_000_000
"""A ``timestamp`` at or above this (year 5138) is a millisecond value sent where seconds belong."""
WALLET_CHARS = frozenset("0123456789abcdef")
PAYOUTS = frozenset({0, 500_000, 1_000_000})
"""Payouts a settled outcome token may have: lost, a 50/50 resolution, won."""


class BadRow(ValueError):
    """A row the adapter cannot turn into an event; the message is the dead letter's reason."""


def to_decimal(value: object, field: str) -> Decimal:
    """An exact decimal from a JSON number (int / Decimal) or a numeric string."""
    if isinstance(value, bool) or value is None:
        raise BadRow(f"{field}: expected a number, got {json.dumps(value)}")
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, float):  # only if a caller parsed JSON without parse_float=Decimal
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise BadRow(f"{field}: {value!r} is not a number") from None
    else:
        raise BadRow(f"{field}: expected a number, got {type(value).__name__}")
    if not number.is_finite():
        raise BadRow(f"{field}: {value!r} is not a finite number")
    return number


def to_micros(number: Decimal) -> int:
    """round(number x 10^6), half to even."""
    return int((number * MICROS).to_integral_value(ROUND_HALF_EVEN))


def canonical(number: Decimal) -> str:
    """One text per value (``12.50``, ``"12.5"`` and ``1.25E1`` -> ``12.5``): the input of the trade id."""
    if number == 0:
        return "0"
    return format(number.normalize(), "f")


def epoch_seconds(value: object, field: str = "timestamp") -> int:
    """Whole epoch seconds (a number or numeric string); milliseconds are refused, not guessed."""
    number = to_decimal(value, field)
    if number != number.to_integral_value():
        raise BadRow(f"{field}: {value!r} is not a whole number of seconds")
    seconds = int(number)
    if seconds < 0:
        raise BadRow(f"{field}: {value!r} is negative")
    if seconds >= MAX_EPOCH_SECONDS:
        raise BadRow(f"{field}: {value!r} looks like milliseconds; the Data API sends epoch seconds")
    return seconds


def text(raw: Mapping[str, Any], field: str, *, required: bool = True) -> str | None:
    """A non-empty string field (token ids sent as JSON integers are taken as their decimal text)."""
    value = raw.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if value is None and not required:
        return None
    raise BadRow(f"{field}: expected a non-empty string, got {json.dumps(value, default=str)}")


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """The fields of one ``/activity?type=TRADE`` row that copybot uses, validated."""

    wallet: str
    transaction_hash: str
    asset: str
    condition_id: str | None
    side: str
    size: Decimal
    price: Decimal
    usdc_size: Decimal | None
    timestamp: int

    @property
    def digest(self) -> str:
        """A stable hash of the row's identity (SPEC 14); identical rows share it."""
        parts = (
            self.wallet,
            self.transaction_hash.lower(),
            self.asset,
            self.side,
            canonical(self.size),
            canonical(self.price),
            str(self.timestamp),
        )
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def parse_activity(raw: object, wallet: str) -> ActivityRow:
    """Validate one activity row of `wallet` (lower-case 0x address); raises :class:`BadRow`."""
    if not isinstance(raw, Mapping):
        raise BadRow(f"expected a JSON object, got {type(raw).__name__}")
    kind = raw.get("type", "TRADE")
    if kind != "TRADE":
        raise BadRow(f"type: expected TRADE, got {json.dumps(kind, default=str)}")
    row_wallet = raw.get("proxyWallet")
    if row_wallet is not None and (not isinstance(row_wallet, str) or row_wallet.lower() != wallet):
        raise BadRow(f"proxyWallet: {row_wallet!r} is not the followed wallet {wallet}")
    side = raw.get("side")
    if side not in ("BUY", "SELL"):  # exactly as the venue says: never upper-cased, never inferred
        raise BadRow(f"side: expected BUY or SELL, got {json.dumps(side, default=str)}")
    size = to_decimal(raw.get("size"), "size")
    price = to_decimal(raw.get("price"), "price")
    usdc = raw.get("usdcSize")
    usdc_size = None if usdc is None else to_decimal(usdc, "usdcSize")
    if size <= 0:
        raise BadRow(f"size: {raw.get('size')!r} must be > 0")
    if not 0 <= price <= 1:
        raise BadRow(f"price: {raw.get('price')!r} is outside 0..1")
    if usdc_size is not None and usdc_size < 0:
        raise BadRow(f"usdcSize: {usdc!r} is negative")
    return ActivityRow(
        wallet=wallet,
        transaction_hash=str(text(raw, "transactionHash")),
        asset=str(text(raw, "asset")),
        condition_id=text(raw, "conditionId", required=False),
        side=str(side),
        size=size,
        price=price,
        usdc_size=usdc_size,
        timestamp=epoch_seconds(raw.get("timestamp")),
    )


def trade_id(digest: str, occurrence: int) -> str:
    """The leaderTrade id: the row hash and its occurrence index among identical rows (0, 1, ...)."""
    return f"pm-{digest}-{occurrence}"


def leader_trade(row: ActivityRow, leader: str, trade_id: str, detect_time_ms: int) -> LeaderTrade:
    """The leaderTrade of a row (SPEC 14); raises :class:`BadRow` if the result breaks the contract."""
    price_micros = min(max(to_micros(row.price), 1), 1_000_000)
    share_micros = to_micros(row.size)
    if row.usdc_size is not None:
        notional_micros = to_micros(row.usdc_size)
    else:
        notional_micros = int(
            (Decimal(share_micros) * Decimal(price_micros) / MICROS).to_integral(ROUND_FLOOR)
        )
    wire = {
        "kind": "leaderTrade",
        "tradeId": trade_id,
        "followedUserId": leader,
        "assetId": row.asset,
        "marketId": row.condition_id,
        "side": row.side,
        "priceMicros": price_micros,
        "shareMicros": share_micros,
        "notionalMicros": notional_micros,
        "detectTimeMs": detect_time_ms,
        "eventTimeMs": row.timestamp * 1000,
    }
    try:  # validated by the wire contract (camelCase), exactly as the worker will decode it
        return LeaderTrade.model_validate(wire, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise BadRow(describe_validation_error(exc)) from None


class Occurrences:
    """Counts identical rows within one scan window, so the n-th copy of a row gets index n-1."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def next(self, digest: str) -> int:
        index = self._seen.get(digest, 0)
        self._seen[digest] = index + 1
        return index


def bad_row_key(raw: object) -> str:
    """A stable key for a row that failed to map, so a re-poll does not dead-letter it again."""
    body = json.dumps(raw, sort_keys=True, default=str)
    return "bad-" + hashlib.sha256(body.encode()).hexdigest()[:32]


# --- positions -> SHADOW_USER snapshot -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Holding:
    """One ``/positions`` row: what the leader holds of an outcome token."""

    asset: str
    condition_id: str | None
    current_value: Decimal


def parse_position(raw: object) -> Holding:
    """Validate one ``/positions`` row; raises :class:`BadRow`."""
    if not isinstance(raw, Mapping):
        raise BadRow(f"expected a JSON object, got {type(raw).__name__}")
    value = to_decimal(raw.get("currentValue"), "currentValue")
    if value < 0:
        raise BadRow(f"currentValue: {raw.get('currentValue')!r} is negative")
    return Holding(str(text(raw, "asset")), text(raw, "conditionId", required=False), value)


def shadow_snapshot(leader: str, holdings: Iterable[Holding], bucket_time_ms: int) -> PortfolioSnapshot:
    """E_u = Σ currentValue of the leader's positions, rounded once at the end."""
    total = sum((h.current_value for h in holdings), Decimal(0))
    return PortfolioSnapshot(
        kind="portfolioSnapshot",
        portfolio_scope="SHADOW_USER",
        followed_user_id=leader,
        bucket_time_ms=bucket_time_ms,
        exposure_micros=to_micros(total),
        equity_micros=None,
        cash_micros=None,
    )


# --- Gamma market -> marketResolved ---------------------------------------------------------------


def json_list(value: object, field: str) -> list[Any]:
    """Gamma sends ``clobTokenIds``/``outcomePrices`` as JSON-encoded strings (``'["1", "0"]'``)."""
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_float=Decimal)
        except ValueError:
            raise BadRow(f"{field}: {value!r} is not a JSON list") from None
    if not isinstance(value, list):
        raise BadRow(f"{field}: expected a list, got {json.dumps(value, default=str)}")
    return value


def is_resolved(market: Mapping[str, Any]) -> bool:
    """Closed **and** resolved by UMA: before that, ``outcomePrices`` are last trade prices."""
    return market.get("closed") is True and market.get("umaResolutionStatus") == "resolved"


def resolved_at_ms(market: Mapping[str, Any], fallback_ms: int) -> int:
    """When the market closed (``closedTime``, e.g. ``2024-11-06 03:39:47+00``), else `fallback_ms`."""
    for field in ("closedTime", "umaEndDate", "endDate"):
        value = market.get(field)
        if isinstance(value, str) and value:
            try:
                return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
            except ValueError:
                continue
    return fallback_ms


def market_resolved(asset_id: str, market_id: str | None, payout_micros: int, at_ms: int) -> MarketResolved:
    """The ``marketResolved`` event (SPEC 13.2), checked by the wire contract."""
    wire = {
        "kind": "marketResolved",
        "assetId": asset_id,
        "marketId": market_id,
        "payoutMicros": payout_micros,
        "resolvedAtMs": at_ms,
    }
    try:
        return MarketResolved.model_validate(wire, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise BadRow(describe_validation_error(exc)) from None


def resolutions(market: Mapping[str, Any], fallback_ms: int) -> list[MarketResolved]:
    """One marketResolved per outcome token of a closed, resolved market ([] if it is not resolved)."""
    if not is_resolved(market):
        return []
    condition_id = text(market, "conditionId")
    tokens = [str(t) for t in json_list(market.get("clobTokenIds"), "clobTokenIds")]
    prices = json_list(market.get("outcomePrices"), "outcomePrices")
    if len(tokens) < 2 or len(tokens) != len(prices):
        raise BadRow(f"clobTokenIds/outcomePrices: {len(tokens)} tokens but {len(prices)} prices")
    payouts = [to_micros(to_decimal(p, "outcomePrices")) for p in prices]
    if any(p not in PAYOUTS for p in payouts) or sum(payouts) != 1_000_000:
        raise BadRow(f"outcomePrices: {prices} is not a settlement (won 1 / lost 0, or 0.5 each)")
    at_ms = resolved_at_ms(market, fallback_ms)
    return [market_resolved(t, condition_id, p, at_ms) for t, p in zip(tokens, payouts, strict=True)]
