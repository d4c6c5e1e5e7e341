"""The leaders file (TOML): which Polymarket proxy wallets to follow, under which leader names.

::

    interval = 15                 # optional: default poll interval in seconds

    [leaders]
    alice = "0x56687bf447db6ffa42ffe2204a05edaa20f55839"

    [leaders.bob]                 # the long form, with a per-leader interval
    wallet = "0x1f0ebc543b2d411f66947041625c0aa1ce61cf79"
    interval = 5

The leader name becomes the events' ``followedUserId`` (so it is what config and the dashboard show).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import UsageError

WALLET = re.compile(r"^0x[0-9a-fA-F]{40}$")


class LeadersError(UsageError):
    """The leaders file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Leader:
    """One followed leader: its copybot id and its Polymarket proxy wallet (lower case)."""

    name: str
    wallet: str
    interval_s: float | None = None
    """Per-leader poll interval; None = the command's ``--interval``."""


def _interval(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise LeadersError(f"{where}: interval must be a number of seconds > 0, got {value!r}")
    return float(value)


def parse_leaders(doc: dict[str, Any], source: str = "leaders file") -> tuple[list[Leader], float | None]:
    """The leaders of a parsed TOML document, and its default interval (None when not set)."""
    unknown = set(doc) - {"leaders", "interval"}
    if unknown:
        raise LeadersError(f"{source}: unknown keys {sorted(unknown)} (use `interval` and [leaders])")
    default = _interval(doc["interval"], source) if "interval" in doc else None
    table = doc.get("leaders")
    if not isinstance(table, dict) or not table:
        raise LeadersError(f"{source}: needs a [leaders] table mapping leader names to proxy wallets")
    leaders: list[Leader] = []
    wallets: dict[str, str] = {}
    for name, entry in table.items():
        where = f"{source}: leaders.{name}"
        if not 1 <= len(name) <= 256:
            raise LeadersError(f"{where}: a leader name has 1-256 characters")
        interval = None
        if isinstance(entry, dict):
            extra = set(entry) - {"wallet", "interval"}
            if extra:
                raise LeadersError(f"{where}: unknown keys {sorted(extra)} (use wallet and interval)")
            if "interval" in entry:
                interval = _interval(entry["interval"], where)
            entry = entry.get("wallet")
        if not isinstance(entry, str) or not WALLET.match(entry):
            raise LeadersError(f"{where}: {entry!r} is not a proxy wallet (0x and 40 hex digits)")
        wallet = entry.lower()
        if wallet in wallets:
            raise LeadersError(f"{where}: wallet {wallet} is also leader {wallets[wallet]!r}")
        wallets[wallet] = name
        leaders.append(Leader(name, wallet, interval))
    return leaders, default


def load_leaders(path: Path) -> tuple[list[Leader], float | None]:
    """Read and check a leaders file; raises :class:`LeadersError` (also for unreadable files)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LeadersError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LeadersError(f"{path}: not valid TOML ({exc})") from None
    return parse_leaders(doc, str(path))
