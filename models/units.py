"""Integer money arithmetic (micros, bps) and time formatting shared by the whole domain."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

MICROS = 1_000_000
"""1 USDC, one share, or a price of 1.0, in micros."""
BPS = 10_000
"""1.0 as a rate in basis points."""
INT64_MAX = 2**63 - 1
"""Upper bound of every integer on the wire, so values fit a SQL BIGINT."""
MAX_TIME_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant an ISO-8601 key can show."""


def notional(share_micros: int, price_micros: int) -> int:
    """USDC micros paid for `share_micros` shares at `price_micros` (floored)."""
    return share_micros * price_micros // MICROS


def shares_for(notional_micros: int, price_micros: int) -> int:
    """Shares (micros) that `notional_micros` buys at `price_micros`; 0 when the price is not positive."""
    if price_micros <= 0:
        return 0
    return notional_micros * MICROS // price_micros


def apply_bps(amount_micros: int, rate_bps: int) -> int:
    """`amount_micros` scaled by a rate in bps (floored)."""
    return amount_micros * rate_bps // BPS


def iso_ms(time_ms: int) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``1970-01-01T00:16:40.000Z``."""
    minutes, rest = divmod(time_ms, 60_000)
    seconds, millis = divmod(rest, 1000)
    # A cached minute and two lookups: this is the hot path (once per group key). A cache per second
    # missed on most trades of a tape (a new second each), and a miss formats through datetime.
    return _iso_minute(minutes) + _SECONDS[seconds] + _MILLIS[millis]


_SECONDS = [f":{s:02d}" for s in range(60)]
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]


@lru_cache(maxsize=4096)
def _iso_minute(minutes_since_epoch: int) -> str:
    return datetime.fromtimestamp(minutes_since_epoch * 60, UTC).strftime("%Y-%m-%dT%H:%M")


# --- display (terminal tables, the dashboard) ----------------------------------------------------------


def usd(micros: int | float | None) -> str:
    """Micros as dollars, e.g. ``$1,234.56``; a dash for unknown."""
    if micros is None:
        return "—"
    sign = "-" if micros < 0 else ""
    return f"{sign}${abs(micros) / MICROS:,.2f}"


def usd_amount(dollars: float | None) -> str:
    """An amount already in dollars, e.g. ``$1,234.56``; a dash for unknown."""
    return "—" if dollars is None else ("-" if dollars < 0 else "") + f"${abs(dollars):,.2f}"


def pct(fraction: float | None, digits: int = 1) -> str:
    """A fraction as a percentage (``0.125`` → ``12.5%``); a dash for unknown."""
    return "—" if fraction is None else f"{fraction * 100:.{digits}f}%"


def pct_points(percent: float | None, digits: int = 2) -> str:
    """A value already in percent (``12.5`` → ``12.50%``); a dash for unknown."""
    return "—" if percent is None else f"{percent:.{digits}f}%"
