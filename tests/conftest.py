"""Session-wide guards."""

from __future__ import annotations

import pytest

from streams import native


def pytest_sessionstart(session: pytest.Session) -> None:
    """Never test a compiled core older than its sources (streams/native.py)."""
    stale = native.stale_message()
    if stale is not None:
        pytest.exit(stale, returncode=4)
