"""The shared token bucket holds its rate (measured against a fake clock, never wall time)."""

from __future__ import annotations

import pytest

from streams.ingest.ratelimit import Buckets, RateLimits, TokenBucket, take_all


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_bucket_hands_out_at_most_burst_plus_rate_times_the_window() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=5, burst=10, clock=clock)
    taken = []
    while clock.now < 60:
        if bucket.try_take():
            taken.append(clock.now)
        clock.now += 0.01
    assert len(taken) <= 10 + 5 * 60
    for start in range(0, 50):  # every 10 s window: at most burst + 50
        in_window = [t for t in taken if start <= t < start + 10]
        assert len(in_window) <= 10 + 5 * 10
    assert len([t for t in taken if 30 <= t < 40]) >= 5 * 10 - 1  # and it does not under-deliver


async def test_leaders_sharing_the_buckets_share_one_rate() -> None:
    clock = FakeClock()
    buckets = Buckets(RateLimits(data_api_rps=10, positions_rps=2, burst=5), clock)
    stamps: list[float] = []
    for _ in range(200):  # three leaders' requests interleaved: they all drain the same data bucket
        await take_all(buckets.for_path("data", "/activity"), clock.sleep)
        stamps.append(clock.now)
    assert stamps[-1] >= (200 - 5) / 10 - 1e-9
    positions = []
    for _ in range(20):
        await take_all(buckets.for_path("data", "/positions"), clock.sleep)
        positions.append(clock.now)
    assert positions[-1] - positions[0] >= (20 - 5) / 2 - 1e-9  # the tighter /positions bucket governs


def test_a_bucket_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1, clock=FakeClock())
