"""Units: the ISO time in group keys (part of every attemptId, so it must never change)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from models.units import MAX_TIME_MS, iso_ms


@given(st.integers(0, MAX_TIME_MS))
def test_iso_ms_is_the_utc_time_to_the_millisecond(time_ms: int) -> None:
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=time_ms)
    assert iso_ms(time_ms) == at.strftime("%Y-%m-%dT%H:%M:%S") + f".{time_ms % 1000:03d}Z"


def test_iso_ms_of_known_times() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_000_000) == "1970-01-01T00:16:40.000Z"
    assert iso_ms(1_767_225_659_999) == "2026-01-01T00:00:59.999Z"
    assert iso_ms(1_767_225_660_000) == "2026-01-01T00:01:00.000Z"
