"""The worker's fast group-key time (streams/worker/records.py) is exactly the core's key_time_of."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from models.codec import key_time_of
from streams.worker.records import _key_time


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def test_the_fast_key_time_equals_the_reference_to_the_millisecond() -> None:
    rng = random.Random(11)
    times = [0, 999, 1_000, 86_399_999, 1_793_628_000_123, 4_102_444_799_999]
    times += [rng.randint(0, 4_102_444_800_000) for _ in range(20_000)]
    for i, ms in enumerate(times):
        base = f"leader-{i}:asset:BUY:{_iso(ms)}" + (":buffer" if i % 2 else "")
        assert _key_time(base) == key_time_of(base), base


def test_an_unusual_key_falls_back_to_the_reference_parser() -> None:
    odd = "leader:asset:BUY:2026-12-01 19:40:00.123Z"
    try:
        expected: int | str = key_time_of(odd)
    except ValueError as exc:
        expected = type(exc).__name__
    try:
        got: int | str = _key_time(odd)
    except ValueError as exc:
        got = type(exc).__name__
    assert got == expected
