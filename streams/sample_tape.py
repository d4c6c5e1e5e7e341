"""A deterministic, realistic sample tape (the seed's background example) for demos and benchmarks.

A $200 bankroll follows four leaders: alice, bob and carol (small books, budgets $60/$60/$50) and a
whale (a $100k–$300k book, budget $30) who sprays many tiny trades and now and then a burst or a big
one. As on the venue, an order that matches several makers arrives as several fills (trades) a few
milliseconds apart. The tape holds their trades (buys and later sells of what they bought),
SHADOW_USER snapshots (E_u) and EXEC_GLOBAL equity snapshots every minute, redelivered duplicates,
ticks every second, and config changes: the initial setup, buffering switched on, a whale min-trade
filter, a rejected change, and the kill switch off and on again. The same seed and size always give
the same bytes.

With ``resolutions`` (the default) one market of each small leader resolves during the tape (alice's
biggest position wins, bob's loses, carol's loses), each while that leader's HARD budget is active: the
settlement takes the position off our books, so alice (who is HARD-capped by then) gets headroom back and
her later trades are copied again. After a resolution the leader holds none of the resolved token and
trades a fresh market in its place. Without ``resolutions`` the tape is exactly the one the generator made
before resolutions existed (same seed, same bytes). ``fill_model="reports"`` sets ``system.fillModel`` in
the initial GLOBAL change (the ``copybot demo --scenario reports`` tape; SPEC 13.3).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

START_MS = 1_793_628_000_000  # 2026-11-02T14:00:00Z
MICROS = 1_000_000
FILLS_SINGLE = 0.45
"""Share of orders filled by a single maker; the others fill against 2–6 makers (one trade each)."""


@dataclass
class LeaderProfile:
    """How one simulated leader trades."""

    leader_id: str
    mean_gap_ms: int
    min_usd: float
    max_usd: float
    exposure_usd: tuple[float, float]
    assets: int
    burst_every_ms: int = 0
    big_trade_chance: float = 0.0
    holdings: dict[str, int] = field(default_factory=dict)
    markets: list[int] = field(default_factory=list)
    """The market number traded in each of the leader's ``assets`` slots (a resolved one is replaced)."""

    def asset(self, slot: int) -> str:
        number = self.markets[slot] if self.markets else slot
        return f"{self.leader_id[:1]}-asset-{number}"


RESOLUTIONS = (("alice", 0.50, MICROS), ("bob", 0.40, 0), ("carol", 0.35, 0))
"""(leader, fraction of the tape's duration, payout): the market of the leader's biggest position resolves
then (alice's is won, bob's and carol's lost), all while Budgeted Dynamic is on with HARD enforcement."""


def _profiles() -> list[LeaderProfile]:
    return [
        LeaderProfile("alice", 4_000, 20, 400, (3_000, 6_000), 6),
        LeaderProfile("bob", 6_000, 50, 800, (8_000, 12_000), 5),
        LeaderProfile("carol", 5_000, 10, 200, (1_000, 3_000), 8),
        LeaderProfile(
            "whale", 450, 0.5, 30, (100_000, 300_000), 12, burst_every_ms=120_000, big_trade_chance=0.01
        ),
    ]


def _config_changes(fill_model: str = "paper") -> list[tuple[float, dict[str, Any]]]:
    """(fraction of the tape's duration, change) — the operator's actions during the session."""
    setup_sizing: dict[str, Any] = {
        "budgetedDynamicEnabled": True,
        "sizingMode": "budgetedDynamic",
        "budgetUsdcMicros": 50_000_000,
        "budgetRMinBps": 0,
        "budgetRMaxBps": 1_000,
        "budgetEnforcement": "hard",
        "minTradeNotionalMicros": 1_000_000,
        "maxTradeNotionalMicros": 20_000_000,
        "maxTradeBankrollBps": 500,
    }
    setup_global: dict[str, Any] = {
        "scope": "GLOBAL",
        "followedUserId": None,
        "sizing": setup_sizing,
        "guardrails": {"maxExposurePerUserBps": 3_500, "maxBuyCostPerShareMicros": 970_000},
        "system": {"initialBankrollMicros": 200_000_000},
    }
    if fill_model != "paper":
        setup_global["system"]["fillModel"] = fill_model
    budgets = {"alice": 60, "bob": 60, "carol": 50, "whale": 30}
    changes: list[tuple[float, dict[str, Any]]] = [(0.0, setup_global)]
    for leader_id, usd in budgets.items():
        user = {"scope": "USER", "followedUserId": leader_id, "sizing": {"budgetUsdcMicros": usd * MICROS}}
        user["leader"] = {"label": leader_id.capitalize()}
        changes.append((0.0, user))
    changes += [
        (0.25, {"scope": "GLOBAL", "followedUserId": None, "buffering": {"enabled": True}}),
        (
            0.40,
            {  # rejected: r_min above r_max, and an unknown key
                "scope": "USER",
                "followedUserId": "whale",
                "sizing": {"budgetUsdcMicros": 30 * MICROS, "budgetRMinBps": 500, "budgetRMaxBps": 100},
                "guardrails": {"maxExposurePerUser": 1},
            },
        ),
        (
            0.45,
            {
                "scope": "USER",
                "followedUserId": "whale",
                "sizing": {"budgetUsdcMicros": 30 * MICROS, "minLeaderTradeNotionalMicros": 2 * MICROS},
                "leader": {"label": "Whale"},
            },
        ),
        (
            0.60,
            {
                "scope": "GLOBAL",
                "followedUserId": None,
                "sizing": {**setup_sizing, "budgetedDynamicEnabled": False},
            },
        ),
        (0.70, {"scope": "GLOBAL", "followedUserId": None, "sizing": setup_sizing}),
        (
            0.80,
            {
                "scope": "USER",
                "followedUserId": "carol",
                "sizing": {"budgetUsdcMicros": 50 * MICROS, "budgetEnforcement": "soft"},
            },
        ),
    ]
    return changes


def generate(
    trades: int = 3_000, seed: int = 7, *, resolutions: bool = True, fill_model: str = "paper"
) -> Iterator[bytes]:
    """Yield the tape's JSON lines (without newlines): about `trades` leader trades plus the rest.

    `resolutions` false gives the tape without market resolutions (byte for byte the pre-resolution
    generator's); `fill_model` is written into the initial GLOBAL change's ``system`` section unless "paper".
    """
    return _Tape(trades, seed, resolutions=resolutions, fill_model=fill_model).lines()


def _market_id(asset: str) -> str:
    return f"market-{asset.rsplit('-', 1)[1]}-{asset[0]}"


WRITE_EVERY = 4096
"""Lines joined into one write."""


def write(
    out: BinaryIO, trades: int = 3_000, seed: int = 7, *, resolutions: bool = True, fill_model: str = "paper"
) -> None:
    """Write the tape of :func:`generate` to `out`, one JSON line each."""
    batch: list[bytes] = []
    for line in generate(trades=trades, seed=seed, resolutions=resolutions, fill_model=fill_model):
        batch.append(line)
        if len(batch) >= WRITE_EVERY:
            out.write(b"\n".join(batch) + b"\n")
            batch.clear()
    if batch:
        out.write(b"\n".join(batch) + b"\n")


class _Tape:
    """The simulation behind :func:`generate`: a time-ordered queue of what happens next, one seeded RNG.

    Every random draw happens in the order the lines are produced, so a seed always gives the same bytes.
    """

    def __init__(self, trades: int, seed: int, *, resolutions: bool, fill_model: str) -> None:
        self.rng = rng = random.Random(seed)
        self.profiles = _profiles()
        self.by_id = {p.leader_id: p for p in self.profiles}
        # Expected trades per ms over all leaders sets the tape's length for the requested trade count.
        fills_per_order = FILLS_SINGLE + (1 - FILLS_SINGLE) * 4
        rate = sum(1 / p.mean_gap_ms for p in self.profiles) * fills_per_order * 1.08  # bursts, duplicates
        self.duration_ms = max(60_000, int(trades / rate))
        self.end_ms = START_MS + self.duration_ms
        self.prices: dict[str, int] = {}
        self.exposure = {p.leader_id: rng.uniform(*p.exposure_usd) for p in self.profiles}
        self.queue: list[tuple[int, int, str, str]] = []  # (time, order, kind, who)
        self.order = 0
        self.trade_seq = 0
        self.recent: list[bytes] = []
        self.changes = _config_changes(fill_model)
        self.resolutions = RESOLUTIONS if resolutions else ()

    def schedule(self, at_ms: int, kind: str, who: str = "") -> None:
        self.order += 1
        heapq.heappush(self.queue, (at_ms, self.order, kind, who))

    def lines(self) -> Iterator[bytes]:
        for p in self.profiles:
            self.schedule(START_MS + int(self.rng.expovariate(1 / p.mean_gap_ms)), "trade", p.leader_id)
            if p.burst_every_ms:
                self.schedule(START_MS + p.burst_every_ms // 2, "burst", p.leader_id)
        self.schedule(START_MS + 1_000, "tick")
        self.schedule(START_MS, "snapshots")
        for n, (fraction, _) in enumerate(self.changes):
            self.schedule(START_MS + int(fraction * self.duration_ms), "config", str(n))
        for leader_id, fraction, _ in self.resolutions:
            self.schedule(START_MS + int(fraction * self.duration_ms), "resolve", leader_id)
        handlers = {
            "trade": self.trade,
            "burst": self.burst,
            "tick": self.tick,
            "snapshots": self.snapshots,
            "config": self.config,
            "resolve": self.resolve,
        }
        while self.queue:
            at_ms, _, kind, who = heapq.heappop(self.queue)
            if at_ms > self.end_ms and kind != "config":
                continue
            yield from handlers[kind](at_ms, who)

    def order_lines(self, p: LeaderProfile, at_ms: int, usd: float) -> list[bytes]:
        """One leader order, filled against one or several makers: a fill per maker, milliseconds apart."""
        rng = self.rng
        holdings = [a for a, s in p.holdings.items() if s > 0]
        sell = bool(holdings) and rng.random() < 0.3
        asset = rng.choice(holdings) if sell else p.asset(rng.randrange(p.assets))
        price = self.prices.get(asset) or rng.randrange(80_000, 920_000)
        price = min(990_000, max(10_000, price + rng.randrange(-15_000, 15_001)))
        self.prices[asset] = price
        fills = 1 if rng.random() < FILLS_SINGLE else rng.randrange(2, 7)
        lines = []
        for n in range(fills):
            self.trade_seq += 1
            fill_price = min(990_000, price + n * 1_000 * (-1 if sell else 1))
            shares = max(1, int(usd / fills * MICROS) * MICROS // fill_price)
            if sell:
                shares = min(shares, p.holdings[asset])
                if shares <= 0:
                    break
            p.holdings[asset] = p.holdings.get(asset, 0) + (-shares if sell else shares)
            detect = at_ms + n * rng.randrange(0, 15)
            lines.append(
                orjson.dumps(
                    {
                        "kind": "leaderTrade",
                        "tradeId": f"{p.leader_id}-{self.trade_seq:08d}",
                        "followedUserId": p.leader_id,
                        "assetId": asset,
                        "marketId": _market_id(asset),
                        "side": "SELL" if sell else "BUY",
                        "priceMicros": fill_price,
                        "shareMicros": shares,
                        "notionalMicros": shares * fill_price // MICROS,
                        "detectTimeMs": detect,
                        "eventTimeMs": detect - rng.randrange(200, 3_000),
                    }
                )
            )
        return lines

    def trade(self, at_ms: int, who: str) -> Iterator[bytes]:
        rng, p = self.rng, self.by_id[who]
        usd = rng.uniform(p.min_usd, p.max_usd)
        if p.big_trade_chance and rng.random() < p.big_trade_chance:
            usd = rng.uniform(2_000, 20_000)
        lines = self.order_lines(p, at_ms, usd)
        yield from lines
        self.recent.extend(lines)
        if rng.random() < 0.01 and self.recent:  # the poller re-delivers a trade it already sent
            yield rng.choice(self.recent[-20:])
        del self.recent[:-20]
        self.schedule(at_ms + 1 + int(rng.expovariate(1 / p.mean_gap_ms)), "trade", who)

    def burst(self, at_ms: int, who: str) -> Iterator[bytes]:
        rng, p = self.rng, self.by_id[who]
        t = at_ms
        for _ in range(rng.randrange(20, 60)):
            t += rng.randrange(5, 60)
            yield from self.order_lines(p, t, rng.uniform(p.min_usd, p.max_usd))
        self.schedule(at_ms + p.burst_every_ms, "burst", who)

    def tick(self, at_ms: int, who: str) -> Iterator[bytes]:
        yield orjson.dumps({"kind": "tick", "nowMs": at_ms})
        self.schedule(at_ms + 1_000, "tick")

    def snapshots(self, at_ms: int, who: str) -> Iterator[bytes]:
        rng, exposure = self.rng, self.exposure
        bucket = at_ms // 60_000 * 60_000
        for p in self.profiles:
            lo, hi = p.exposure_usd
            exposure[p.leader_id] = min(hi, max(lo, exposure[p.leader_id] * rng.uniform(0.95, 1.05)))
            yield orjson.dumps(
                {
                    "kind": "portfolioSnapshot",
                    "portfolioScope": "SHADOW_USER",
                    "followedUserId": p.leader_id,
                    "bucketTimeMs": bucket,
                    "exposureMicros": int(exposure[p.leader_id] * MICROS),
                    "equityMicros": None,
                    "cashMicros": None,
                }
            )
        equity = int(rng.uniform(190, 215) * MICROS)
        yield orjson.dumps(
            {
                "kind": "portfolioSnapshot",
                "portfolioScope": "EXEC_GLOBAL",
                "followedUserId": None,
                "bucketTimeMs": bucket,
                "exposureMicros": int(rng.uniform(40, 120) * MICROS),
                "equityMicros": equity,
                "cashMicros": equity - 80 * MICROS,
            }
        )
        self.schedule(at_ms + 60_000, "snapshots")

    def resolve(self, at_ms: int, who: str) -> Iterator[bytes]:
        """The market of `who`'s biggest position (shares × last price) resolves; the leader redeems it and
        trades a fresh market in that slot from now on. Draws nothing from the RNG."""
        p = self.by_id[who]
        held = [(s * self.prices[a], a) for a, s in p.holdings.items() if s > 0]
        if not held:
            return
        _, asset = max(held)
        payout = next(pay for leader_id, _, pay in self.resolutions if leader_id == who)
        yield orjson.dumps(
            {
                "kind": "marketResolved",
                "assetId": asset,
                "marketId": _market_id(asset),
                "payoutMicros": payout,
                "resolvedAtMs": at_ms,
            }
        )
        del p.holdings[asset]
        if not p.markets:
            p.markets = list(range(p.assets))
        number = int(asset.rsplit("-", 1)[1])
        p.markets[p.markets.index(number)] = max(p.markets) + 1

    def config(self, at_ms: int, who: str) -> Iterator[bytes]:
        n = int(who)
        yield orjson.dumps(
            {
                "kind": "configChange",
                "changeId": f"chg-{n + 1:03d}",
                "changedAtMs": at_ms,
                **self.changes[n][1],
            }
        )
