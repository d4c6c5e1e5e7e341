"""HTTP to Polymarket's Data API and Gamma API: rate limited, retried with backoff, exact decimals.

- Every request first takes a token from the shared buckets (:mod:`streams.ingest.ratelimit`).
- 429 (waiting ``Retry-After`` when given), 5xx and network errors are retried with exponential backoff
  and full jitter, at most ``RetryPolicy.attempts`` times; then :class:`GaveUp` is raised and the caller
  skips this poll (the next poll tries again).
- Any other 4xx is logged with its URL and skipped (``None``): retrying a bad request cannot help.
- Bodies are parsed with ``parse_float=Decimal``: a JSON number ``0.1`` stays exactly 0.1.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from streams.ingest.metrics import IngestMetrics
from streams.ingest.ratelimit import Buckets, Clock, Sleep, take_all

log = logging.getLogger("copybot.ingest")

Params = Mapping[str, str | int | Sequence[str]]


class GaveUp(RuntimeError):
    """Retries of one request were exhausted (429 / 5xx / network errors); the message says what happened."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff: attempt n waits uniform(0, min(cap, base x 2^n)) seconds."""

    attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 30.0
    retry_after_cap_s: float = 120.0


def retry_after_seconds(value: str | None, now_epoch_s: float) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now_epoch_s)
    except (TypeError, ValueError):
        return None


class PolymarketHttp:
    """GET JSON from the Data API (``api="data"``) or Gamma (``api="gamma"``)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        data_api: str,
        gamma_api: str,
        buckets: Buckets,
        sleep: Sleep,
        metrics: IngestMetrics,
        *,
        wall_clock: Clock,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._bases = {"data": data_api.rstrip("/"), "gamma": gamma_api.rstrip("/")}
        self._buckets = buckets
        self._sleep = sleep
        self._metrics = metrics
        self._wall_clock = wall_clock
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()

    async def get(self, api: str, path: str, params: Params) -> Any | None:
        """The parsed JSON body of a 200; None for a 4xx other than 429 (logged); raises :class:`GaveUp`."""
        url = self._bases[api] + path
        last_problem = ""
        for attempt in range(self._retry.attempts):
            await take_all(self._buckets.for_path(api, path), self._sleep)
            self._metrics.requests += 1
            try:
                response = await self._client.get(url, params=params)
            except httpx.TransportError as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
                self._metrics.http_errors[(api, type(exc).__name__)] += 1
                await self._backoff(attempt, None, url, last_problem)
                continue
            status = response.status_code
            if status == 200:
                try:
                    return json.loads(response.content, parse_float=Decimal)
                except ValueError as exc:
                    self._metrics.http_errors[(api, "bad-json")] += 1
                    last_problem = f"unreadable JSON body ({exc})"
                    await self._backoff(attempt, None, url, last_problem)
                    continue
            self._metrics.http_errors[(api, str(status))] += 1
            if status == 429 or status >= 500:
                last_problem = f"HTTP {status}"
                wait = retry_after_seconds(response.headers.get("retry-after"), self._wall_clock())
                await self._backoff(attempt, wait, str(response.url), last_problem)
                continue
            log.warning("skipped %s: HTTP %d %s", response.url, status, response.text[:200])
            return None
        raise GaveUp(f"GET {url} failed {self._retry.attempts} times (last: {last_problem})")

    async def _backoff(self, attempt: int, retry_after: float | None, url: str, problem: str) -> None:
        if attempt + 1 >= self._retry.attempts:
            return
        if retry_after is not None:
            delay = min(retry_after, self._retry.retry_after_cap_s)
        else:
            delay = self._rng.uniform(0, min(self._retry.cap_s, self._retry.base_s * 2**attempt))
        log.info("retrying %s in %.2f s (%s, attempt %d)", url, delay, problem, attempt + 1)
        await self._sleep(delay)
