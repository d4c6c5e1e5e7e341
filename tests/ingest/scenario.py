"""The recorded-shape scenario the adapter tests share: two leaders on the fake APIs, and what they yield.

Row shapes follow the Data API's documented ``/activity`` schema (proxyWallet, timestamp in epoch seconds,
conditionId, type, size, usdcSize, transactionHash, price, asset, side, outcomeIndex, outcome, title, slug,
eventSlug); numbers are written as JSON numbers for some rows and as strings for others. Expected events
are written out by hand from SPEC 14, not computed with the adapter's own helpers (except the trade-id
hash, which is spelled out again here).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tests.ingest.fake_polymarket import FakePolymarket, Scripted

T0 = 1_764_590_000
"""The scenario's first second (epoch seconds); leaders start here (``--since``)."""
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
MARKET_1 = "0x" + "c1" * 32  # alice's: outcome tokens 1001 (Yes) and 1002 (No)
MARKET_2 = "0x" + "c2" * 32  # bob's: 2001 (Yes), 2002 (No)
TX = ["0x" + f"{n:02x}" * 32 for n in range(16)]


@dataclass(frozen=True)
class Fill:
    """One activity row as the venue sends it, and the leaderTrade micros it must map to."""

    wallet: str
    ts: int
    tx: str
    asset: str
    market: str
    side: str
    size: str
    price: str
    usdc: str
    strings: bool
    """Send the numbers as JSON strings (else as JSON numbers)."""
    micros: tuple[int, int, int]
    """(priceMicros, shareMicros, notionalMicros)."""

    def text(self) -> str:
        def number(value: str) -> str:
            return json.dumps(value) if self.strings else value

        outcome = 0 if self.asset.endswith("1") else 1
        return (
            f'{{"proxyWallet": "{self.wallet}", "timestamp": {self.ts}, "conditionId": "{self.market}", '
            f'"type": "TRADE", "size": {number(self.size)}, "usdcSize": {number(self.usdc)}, '
            f'"transactionHash": "{self.tx}", "price": {number(self.price)}, "asset": "{self.asset}", '
            f'"side": "{self.side}", "outcomeIndex": {outcome}, "outcome": "{["Yes", "No"][outcome]}", '
            f'"title": "Will it happen?", "slug": "it", "eventSlug": "it"}}'
        )

    def digest(self, canonical_size: str, canonical_price: str) -> str:
        parts = (self.wallet, self.tx, self.asset, self.side, canonical_size, canonical_price, str(self.ts))
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def trade(leader: str, fill: Fill, trade_id: str, detect_ms: int) -> dict[str, Any]:
    price, shares, notional = fill.micros
    return {
        "kind": "leaderTrade",
        "tradeId": trade_id,
        "followedUserId": leader,
        "assetId": fill.asset,
        "marketId": fill.market,
        "side": fill.side,
        "priceMicros": price,
        "shareMicros": shares,
        "notionalMicros": notional,
        "detectTimeMs": detect_ms,
        "eventTimeMs": fill.ts * 1000,
    }


# alice: two identical rows (one taker order split into two identical fills), a SELL sent as strings, a maker
# fill in the same transaction as someone else's taker order (the /trades default takerOnly=true hides those;
# /activity has them), then more rows at the boundary second.
A1 = Fill(
    ALICE, T0 + 10, TX[1], "1001", MARKET_1, "BUY", "10", "0.5", "5", False, (500_000, 10_000_000, 5_000_000)
)
A2 = A1  # identical: occurrence 1
A3 = Fill(ALICE, T0 + 20, TX[2], "1002", MARKET_1, "SELL", "3.333333", "0.42", "1.4", True,
          (420_000, 3_333_333, 1_400_000))  # fmt: skip
A4_MAKER = Fill(ALICE, T0 + 20, TX[2], "1001", MARKET_1, "BUY", "7.000", "0.51", "3.57", False,
                (510_000, 7_000_000, 3_570_000))  # fmt: skip
A5 = Fill(
    ALICE, T0 + 30, TX[3], "1001", MARKET_1, "BUY", "0.1", "0.3", "0.03", True, (300_000, 100_000, 30_000)
)
A6 = Fill(
    ALICE, T0 + 30, TX[4], "1002", MARKET_1, "BUY", "2", "0.000001", "0.000002", False, (1, 2_000_000, 2)
)
# round 2: one more row in the boundary second, one later
A7 = Fill(ALICE, T0 + 30, TX[5], "1002", MARKET_1, "SELL", "1.5", "0.45", "0.675", False,
          (450_000, 1_500_000, 675_000))  # fmt: skip
A8 = Fill(
    ALICE, T0 + 40, TX[6], "1001", MARKET_1, "BUY", "4", "0.6", "2.4", True, (600_000, 4_000_000, 2_400_000)
)

B1 = Fill(BOB, T0 + 15, TX[8], "2001", MARKET_2, "BUY", "100", "0.25", "25", False,
          (250_000, 100_000_000, 25_000_000))  # fmt: skip
BOB_MALFORMED = (
    f'{{"proxyWallet": "{BOB}", "timestamp": {T0 + 16}, "conditionId": "{MARKET_2}", "type": "TRADE", '
    f'"size": "lots", "usdcSize": 1, "transactionHash": "{TX[9]}", "price": 0.5, "asset": "2002", '
    '"side": "BUY", "outcomeIndex": 1, "outcome": "No", "title": "t", "slug": "s", "eventSlug": "e"}'
)

ID = {
    "A1": "pm-" + A1.digest("10", "0.5") + "-0",
    "A2": "pm-" + A1.digest("10", "0.5") + "-1",
    "A3": "pm-" + A3.digest("3.333333", "0.42") + "-0",
    "A4": "pm-" + A4_MAKER.digest("7", "0.51") + "-0",
    "A5": "pm-" + A5.digest("0.1", "0.3") + "-0",
    "A6": "pm-" + A6.digest("2", "0.000001") + "-0",
    "A7": "pm-" + A7.digest("1.5", "0.45") + "-0",
    "A8": "pm-" + A8.digest("4", "0.6") + "-0",
    "B1": "pm-" + B1.digest("100", "0.25") + "-0",
}


def gamma_market(
    condition_id: str, tokens: tuple[str, str], prices: tuple[str, str] | None
) -> dict[str, Any]:
    """A Gamma market object: open (prices None) or closed and resolved with `prices`."""
    resolved = prices is not None
    return {
        "id": "1",
        "conditionId": condition_id,
        "question": "Will it happen?",
        "clobTokenIds": json.dumps(list(tokens)),
        "outcomes": '["Yes", "No"]',
        "outcomePrices": json.dumps(list(prices or ("0.55", "0.45"))),
        "closed": resolved,
        "umaResolutionStatus": "resolved" if resolved else None,
        "closedTime": "2025-12-01 12:00:00+00" if resolved else None,
    }


RESOLVED_AT_MS = 1_764_590_400_000  # 2025-12-01 12:00:00 UTC


def round_one(fake: FakePolymarket) -> None:
    """The venue before the first poll: rows, positions, open markets, a 429 and a 500 to ride out."""
    state = fake.state
    state.activity[ALICE] = [f.text() for f in (A1, A2, A3, A4_MAKER, A5, A6)]
    state.activity[BOB] = [B1.text(), BOB_MALFORMED]
    state.positions[ALICE] = [
        f'{{"proxyWallet": "{ALICE}", "asset": "1001", "conditionId": "{MARKET_1}", "size": 17.1, '
        '"avgPrice": 0.5, "curPrice": 0.7, "currentValue": 11.97, "redeemable": false}',
        f'{{"proxyWallet": "{ALICE}", "asset": "1002", "conditionId": "{MARKET_1}", "size": "2", '
        '"avgPrice": "0.1", "curPrice": "0.3", "currentValue": "0.6", "redeemable": false}',
    ]
    state.positions[BOB] = [
        f'{{"proxyWallet": "{BOB}", "asset": "2001", "conditionId": "{MARKET_2}", "size": 100, '
        '"avgPrice": 0.25, "curPrice": 0.3, "currentValue": 30, "redeemable": false}',
    ]
    state.markets[MARKET_1] = gamma_market(MARKET_1, ("1001", "1002"), None)
    state.markets[MARKET_2] = gamma_market(MARKET_2, ("2001", "2002"), None)
    state.scripted["/activity"] = [Scripted(429, {"Retry-After": "1"}), Scripted(500)]


def round_two(fake: FakePolymarket) -> None:
    """Later: two more alice rows (one in the boundary second), both markets resolve (bob's 50/50)."""
    state = fake.state
    state.activity[ALICE] = [*state.activity[ALICE], A7.text(), A8.text()]
    state.markets[MARKET_1] = gamma_market(MARKET_1, ("1001", "1002"), ("0", "1"))
    state.markets[MARKET_2] = gamma_market(MARKET_2, ("2001", "2002"), ("0.5", "0.5"))


def expected_trades(detect_1: int, detect_2: int) -> dict[str, list[dict[str, Any]]]:
    """Every leaderTrade of rounds one and two, per leader, in publish order."""
    alice_1 = [("A1", A1), ("A2", A2), ("A3", A3), ("A4", A4_MAKER), ("A5", A5), ("A6", A6)]
    return {
        "alice": [trade("alice", f, ID[k], detect_1) for k, f in alice_1]
        + [trade("alice", f, ID[k], detect_2) for k, f in (("A7", A7), ("A8", A8))],
        "bob": [trade("bob", B1, ID["B1"], detect_1)],
    }


def expected_resolutions() -> list[dict[str, Any]]:
    def resolved(asset: str, market: str, payout: int) -> dict[str, Any]:
        return {
            "kind": "marketResolved",
            "assetId": asset,
            "marketId": market,
            "payoutMicros": payout,
            "resolvedAtMs": RESOLVED_AT_MS,
        }

    return [
        resolved("1001", MARKET_1, 0),
        resolved("1002", MARKET_1, 1_000_000),
        resolved("2001", MARKET_2, 500_000),
        resolved("2002", MARKET_2, 500_000),
    ]
