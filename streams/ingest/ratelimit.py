"""Token buckets that keep the adapter under Polymarket's documented rate limits.

One set of buckets is shared by every followed leader (the limits are per client, not per wallet). The
clock and the sleep are arguments, so a test measures the rate against a fake clock.

Documented limits (docs.polymarket.com, "Rate Limits"; sliding 10 s windows, enforced by Cloudflare
throttling - requests over the limit are delayed, not refused): Data API 1,000 / 10 s overall,
``/positions`` 150 / 10 s, ``/trades`` 200 / 10 s; Gamma 4,000 / 10 s overall, ``/markets`` 300 / 10 s.
The defaults below use half of each, so a desk can run a second tool beside the adapter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

Clock = Callable[[], float]
"""Seconds on a monotonic clock."""
Sleep = Callable[[float], Awaitable[None]]
EPSILON = 1e-9
"""A token short by less than this counts as whole: a float sleep that small may not move a clock at all."""


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; in any window of T seconds at most
    ``burst + rate x T`` tokens are handed out."""

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst ≥ 1 (got {rate}, {burst})")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def wait_time(self) -> float:
        """Seconds until a token is available (0 when one is available now)."""
        self._refill()
        return 0.0 if self._tokens >= 1 - EPSILON else (1 - self._tokens) / self.rate

    def try_take(self) -> bool:
        """Take a token if one is available now."""
        self._refill()
        if self._tokens >= 1 - EPSILON:
            self._tokens = max(0.0, self._tokens - 1)
            return True
        return False


async def take_all(buckets: Sequence[TokenBucket], sleep: Sleep) -> None:
    """Wait until every bucket has a token, then take one from each (all or none, so no token leaks)."""
    while True:
        wait = max(b.wait_time() for b in buckets)
        if wait <= 0:
            for bucket in buckets:
                bucket.try_take()
            return
        await sleep(wait)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests per second (sustained) and burst for each bucket the adapter uses."""

    data_api_rps: float = 50.0  # documented 1,000 / 10 s
    positions_rps: float = 7.5  # documented 150 / 10 s
    gamma_markets_rps: float = 15.0  # documented 300 / 10 s
    burst: float = 10.0


class Buckets:
    """The shared buckets: ``for_path("data", "/positions")`` -> the buckets a request must pass."""

    def __init__(self, limits: RateLimits, clock: Clock) -> None:
        self.data = TokenBucket(limits.data_api_rps, limits.burst, clock)
        self.positions = TokenBucket(
            limits.positions_rps, min(limits.burst, limits.positions_rps * 10), clock
        )
        self.gamma = TokenBucket(limits.gamma_markets_rps, limits.burst, clock)

    def for_path(self, api: str, path: str) -> list[TokenBucket]:
        if api == "gamma":
            return [self.gamma]
        if path == "/positions":
            return [self.data, self.positions]
        return [self.data]
