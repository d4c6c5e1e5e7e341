"""What a chaos run publishes: seeded leaders, trades, snapshots, config changes and malformed messages.

Everything except the clock comes from one seeded RNG, so a seed always gives the same sequence of
messages; their detect and bucket times are the wall clock at publish time (ticks are on in a chaos run,
so trades must be "now" or they are all late).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.settings import CONFIG_CHANGES, SNAPSHOTS, TRADES
from streams.topology import leader_partition

MICROS = 1_000_000
ROLES = ("hard-small", "hard", "soft", "fixed")
"""Leader i gets ROLES[i % 4]: two HARD budgets (one that binds all the time), one SOFT, one fixed-rate."""


def pick_leaders(partitions: int, per_partition: int) -> list[str]:
    """Leader ids spread evenly: exactly `per_partition` of them land in each decision partition."""
    chosen: dict[int, list[str]] = defaultdict(list)
    n = 0
    while any(len(chosen[p]) < per_partition for p in range(partitions)):
        name = f"ldr{n:02d}"
        p = leader_partition(name, partitions)
        if len(chosen[p]) < per_partition:
            chosen[p].append(name)
        n += 1
    return sorted(name for names in chosen.values() for name in names)


def _change(change_id: str, scope: str, leader: str | None, **sections: Any) -> dict[str, Any]:
    return {
        "kind": "configChange",
        "changeId": change_id,
        "scope": scope,
        "followedUserId": leader,
        "changedAtMs": 0,
        **sections,
    }


def setup_changes(leaders: list[str]) -> list[dict[str, Any]]:
    """Budgeted Dynamic on, and per leader a HARD / SOFT budget or fixed rate (ROLES)."""
    changes = [
        _change(
            "setup-global",
            "GLOBAL",
            None,
            sizing={
                "budgetedDynamicEnabled": True,
                "copyPctNotionalBps": 100,
                "minTradeNotionalMicros": 1 * MICROS,
                "maxTradeNotionalMicros": 25 * MICROS,
                "budgetRMinBps": 10,
                "budgetRMaxBps": 500,
            },
        )
    ]
    per_role: dict[str, dict[str, Any]] = {
        "hard-small": {"sizingMode": "budgetedDynamic", "budgetUsdcMicros": 15 * MICROS},
        "hard": {"sizingMode": "budgetedDynamic", "budgetUsdcMicros": 120 * MICROS},
        "soft": {
            "sizingMode": "budgetedDynamic",
            "budgetUsdcMicros": 60 * MICROS,
            "budgetEnforcement": "soft",
        },
        "fixed": {"copyPctNotionalBps": 200},
    }
    for i, leader in enumerate(leaders):
        changes.append(_change(f"setup-{leader}", "USER", leader, sizing=per_role[ROLES[i % 4]]))
    return changes


def timed_changes(leaders: list[str]) -> list[tuple[float, dict[str, Any]]]:
    """(fraction of the run, change): buffering on for the middle third, a budget raised, one rejected."""
    buffering_on = {
        "enabled": True,
        "notionalThresholdMicros": 2 * MICROS,
        "flushMinNotionalMicros": 3 * MICROS,
        "minExecNotionalMicros": 1 * MICROS,
        "maxBufferMs": 1_500,
        "quietFlushMs": 400,
    }
    hard = leaders[1 % len(leaders)]
    return [
        (0.35, _change("buffering-on", "GLOBAL", None, buffering=buffering_on)),
        (
            0.5,
            _change(
                "raise-budget",
                "USER",
                hard,
                sizing={"sizingMode": "budgetedDynamic", "budgetUsdcMicros": 200 * MICROS},
            ),
        ),
        (0.55, _change("rejected", "USER", hard, sizing={"budgetRMinBps": 900, "budgetRMaxBps": 100})),
        (0.65, _change("buffering-off", "GLOBAL", None, buffering={"enabled": False})),
    ]


MALFORMED: dict[str, list[bytes]] = {
    TRADES: [
        b"{not json",
        b'{"kind":"mystery"}',
        b"\xff\xfe",
        orjson.dumps(
            {
                "kind": "leaderTrade",
                "tradeId": "bad",
                "followedUserId": "x",
                "assetId": "a",
                "marketId": None,
                "side": "BUY",
                "priceMicros": "cheap",
                "shareMicros": 1,
                "notionalMicros": 1,
                "detectTimeMs": 1,
            }
        ),
    ],
    SNAPSHOTS: [
        b"[]",
        b"\x00",
        orjson.dumps({"kind": "portfolioSnapshot", "portfolioScope": "X"}),
        orjson.dumps({"kind": "tick", "nowMs": 1}),  # valid event, wrong topic
    ],
    CONFIG_CHANGES: [
        b"null",
        orjson.dumps({"kind": "configChange", "changeId": ""}),
        orjson.dumps({"kind": "tick", "nowMs": 1}),  # valid event, wrong topic
        orjson.dumps(_change("bad-envelope", "GLOBAL", "someone")),
    ],
}
"""Messages every worker must dead-letter, per input topic."""


@dataclass
class Message:
    """One message to publish: a base topic, key, value; `malformed` when it must be dead-lettered."""

    topic: str
    key: str | None
    value: bytes
    malformed: bool = False
    trade: tuple[str, str] | None = None
    """(leader, tradeId) of a valid trade."""


@dataclass
class ChaosInput:
    """The seeded source of a chaos run's messages, drawn step by step as the run publishes."""

    seed: int
    leaders: list[str]
    trades_per_step: int
    malformed_chance: float
    rng: random.Random = field(init=False)
    sent: list[tuple[str, bytes]] = field(default_factory=list)
    """(leader, value) of the trades published so far (for redeliveries)."""
    count: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def active_leaders(self, progress: float) -> list[str]:
        """Half the leaders trade from the start; the others join one by one during the first 60 % of
        the run, so leaders are first seen between restarts."""
        early = max(1, len(self.leaders) // 2)
        joined = early + int(progress / 0.6 * (len(self.leaders) - early))
        return self.leaders[: min(len(self.leaders), joined)]

    def trade(self, leader: str, now_ms: int) -> Message:
        rng = self.rng
        self.count += 1
        price = rng.randrange(50_000, 950_001)
        notional = int(MICROS * 10 ** rng.uniform(0.7, 3.2))  # $5 … $1,600
        asset = f"{leader}-a{rng.randrange(4)}"
        value = orjson.dumps(
            {
                "kind": "leaderTrade",
                "tradeId": f"{leader}-t{self.count}",
                "followedUserId": leader,
                "assetId": asset,
                "marketId": f"m-{asset}",
                "side": "SELL" if rng.random() < 0.4 else "BUY",
                "priceMicros": price,
                "shareMicros": max(1, notional * MICROS // price),
                "notionalMicros": notional,
                "detectTimeMs": now_ms,
            }
        )
        self.sent.append((leader, value))
        return Message(TRADES, leader, value, trade=(leader, f"{leader}-t{self.count}"))

    def step(self, progress: float, now_ms: int) -> list[Message]:
        """The messages of one publishing step: trades, now and then a redelivered duplicate or a
        malformed message."""
        rng = self.rng
        leaders = self.active_leaders(progress)
        out = [self.trade(rng.choice(leaders), now_ms) for _ in range(self.trades_per_step)]
        if rng.random() < 0.1 and len(self.sent) > 20:  # an exact redelivery: recent, or of long ago
            back = rng.randrange(1, 20) if rng.random() < 0.5 else rng.randrange(1, len(self.sent))
            leader, value = self.sent[-back]
            out.append(Message(TRADES, leader, value))
        if rng.random() < self.malformed_chance:
            topic = rng.choice(sorted(MALFORMED))
            key = "GLOBAL" if topic == CONFIG_CHANGES else rng.choice(self.leaders)
            out.append(Message(topic, key, rng.choice(MALFORMED[topic]), malformed=True))
        return out

    def snapshot(self, now_ms: int, whole: bool) -> Message:
        """A leader's own book (E_u), or our whole portfolio's equity (EXEC_GLOBAL)."""
        rng = self.rng
        leader = None if whole else rng.choice(self.leaders)
        value = orjson.dumps(
            {
                "kind": "portfolioSnapshot",
                "portfolioScope": "EXEC_GLOBAL" if whole else "SHADOW_USER",
                "followedUserId": leader,
                "bucketTimeMs": now_ms,
                "exposureMicros": rng.randrange(500, 50_000) * MICROS,
                "equityMicros": rng.randrange(8_000, 12_000) * MICROS if whole else None,
                "cashMicros": None,
            }
        )
        return Message(SNAPSHOTS, leader or "__global__", value)
