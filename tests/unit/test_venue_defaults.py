"""SPEC 13.7: with every key at its default and no resolution or report in the input, the copy attempts are
what sections 1-12 produce, field for field, plus ``budget.reservedMicros`` = 0.

"What sections 1-12 produce" is pinned as the digest of the pre-venue core's replay output (commit fd61e60,
the last one before issue 8) over 200 seeded random tapes, computed once with that commit's code:

    mkdir -p /tmp/oldcore/tests/unit && git archive fd61e60 models streams | tar -x -C /tmp/oldcore
    touch /tmp/oldcore/tests/__init__.py /tmp/oldcore/tests/unit/__init__.py
    cp tests/unit/test_venue_defaults.py /tmp/oldcore/tests/unit/
    cd /tmp && PYTHONPATH=/tmp/oldcore python -c \
        "from tests.unit.test_venue_defaults import digest; print(digest(strip=False))"

The tapes use only the events and config keys of sections 1-12 (a generator below, stdlib only).
"""

from __future__ import annotations

import hashlib
import io
import random
from typing import Any

import orjson

from streams.replay import replay

PRE_VENUE_DIGEST = "aaa0f29dabd89f0fc58dac6e10d599cb616464d5cd7a30e9d2a102a942f92c97"
TAPES = 200
USD = 1_000_000
T0 = 1_000_000


def legacy_tape(seed: int) -> list[bytes]:
    """A random tape of leaderTrade, tick, portfolioSnapshot and configChange events (SPEC 3 only)."""
    rnd = random.Random(seed)
    leaders, assets = ("u1", "u2", "u3"), ("a1", "a2", "a3")
    events: list[dict[str, Any]] = []
    clock, n = T0, 0
    for _ in range(rnd.randint(5, 80)):
        n += 1
        what = rnd.choice(["trade"] * 6 + ["dup", "tick", "shadow", "equity", "global", "user"])
        if what in ("trade", "dup"):
            if what == "dup" and events and events[-1]["kind"] == "leaderTrade":
                events.append(dict(events[-1]))
                continue
            clock += rnd.randint(0, 400)
            price, shares = rnd.randint(1, USD), rnd.randint(1, 2_000 * USD)
            events.append(
                {
                    "kind": "leaderTrade",
                    "tradeId": f"t{n}",
                    "followedUserId": rnd.choice(leaders),
                    "assetId": rnd.choice(assets),
                    "marketId": rnd.choice([None, "m1"]),
                    "side": rnd.choice(["BUY", "BUY", "SELL"]),
                    "priceMicros": price,
                    "shareMicros": shares,
                    "notionalMicros": shares * price // USD,
                    "detectTimeMs": max(0, clock - (rnd.randint(0, 600) if rnd.random() < 0.3 else 0)),
                }
            )
        elif what == "tick":
            clock += rnd.randint(0, 3_000)
            events.append({"kind": "tick", "nowMs": clock})
        elif what in ("shadow", "equity"):
            events.append(
                {
                    "kind": "portfolioSnapshot",
                    "portfolioScope": "SHADOW_USER" if what == "shadow" else "EXEC_GLOBAL",
                    "followedUserId": rnd.choice(leaders) if what == "shadow" else None,
                    "bucketTimeMs": clock - rnd.randint(0, 5_000_000),
                    "exposureMicros": rnd.randint(0, 500 * USD),
                    "equityMicros": None if what == "shadow" else rnd.randint(0, 20_000 * USD),
                    "cashMicros": None,
                }
            )
        else:
            events.append(_config(rnd, n, what == "global", leaders))
    return [orjson.dumps(e) for e in events]


def _config(rnd: random.Random, n: int, is_global: bool, leaders: tuple[str, ...]) -> dict[str, Any]:
    sizing = {
        k: v
        for k, v in {
            "budgetedDynamicEnabled": rnd.random() < 0.7,
            "sizingMode": rnd.choice(["fixedRate", "budgetedDynamic"]),
            "budgetUsdcMicros": rnd.randint(1, 200 * USD),
            "budgetEnforcement": rnd.choice(["hard", "soft"]),
            "budgetRMaxBps": rnd.randint(100, 20_000),
            "minTradeNotionalMicros": rnd.randint(0, 5 * USD),
            "minLeaderTradeNotionalMicros": rnd.randint(0, 20 * USD),
        }.items()
        if rnd.random() < 0.5
    }
    change: dict[str, Any] = {
        "kind": "configChange",
        "changeId": f"c{n}",
        "scope": "GLOBAL" if is_global else "USER",
        "followedUserId": None if is_global else rnd.choice(leaders),
        "changedAtMs": 0,
        "sizing": sizing,
    }
    if is_global and rnd.random() < 0.5:
        change["buffering"] = {
            "enabled": rnd.random() < 0.6,
            "nettingMode": rnd.choice(["sameSideOnly", "netBuySell"]),
            "minExecNotionalMicros": rnd.randint(0, 2 * USD),
        }
    if is_global and rnd.random() < 0.4:
        change["system"] = {
            "aggregationWindowMs": rnd.choice([0, 1, 100, 250, 1_000]),
            "copyEngineEnabled": rnd.random() < 0.9,
        }
    return change


def pre_venue_view(stdout: bytes) -> bytes:
    """The attempts only, each without ``budget.reservedMicros`` (written last in its block)."""
    kept = []
    for line in stdout.splitlines():
        if line.startswith(b'{"kind":"leaderBook"'):
            continue
        assert line.startswith(b'{"kind":"copyAttempt"'), line[:40]
        assert line.count(b',"reservedMicros":0}') == 1, "reservedMicros must be 0 with no orders"
        kept.append(line.replace(b',"reservedMicros":0}', b"}"))
    return b"".join(line + b"\n" for line in kept)


def digest(strip: bool = True) -> str:
    """SHA-256 over every tape's replay stdout (attempts, pre-venue view) and stderr."""
    h = hashlib.sha256()
    for seed in range(TAPES):
        out, err = io.BytesIO(), io.BytesIO()
        replay(legacy_tape(seed), out, err)
        h.update(pre_venue_view(out.getvalue()) if strip else out.getvalue())
        h.update(b"\x00" + err.getvalue() + b"\x01")
    return h.hexdigest()


def test_with_defaults_and_no_venue_events_attempts_equal_the_pre_venue_core_field_for_field() -> None:
    assert digest() == PRE_VENUE_DIGEST


def test_the_legacy_tapes_exercise_every_source_and_decision() -> None:
    seen: set[tuple[str, str]] = set()
    attempts = 0
    for seed in range(TAPES):
        out = io.BytesIO()
        replay(legacy_tape(seed), out, io.BytesIO())
        for line in pre_venue_view(out.getvalue()).splitlines():
            a = orjson.loads(line)
            attempts += 1
            seen.add((a["sourceType"], a["decision"]))
            seen.update(("reason", r) for r in a["reasonCodes"])
    assert attempts > 2_000
    assert {(s, d) for s in ("AGGREGATOR", "IMMEDIATE", "BUFFER") for d in ("EXECUTE", "SKIP")} <= seen
    assert {("reason", r) for r in ("BUDGET_HARD_CAP_EXCEEDED", "NOT_ENOUGH_POSITION_TO_SELL")} <= seen
