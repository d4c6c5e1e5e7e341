"""Test helpers over a projection database (kept out of the shipped store)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, select

from projections.store import TABLES, ProjectionStore


def dump(store: ProjectionStore, tables: Sequence[Table] = TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of `tables`, sorted (to compare whole databases)."""
    with store.engine.begin() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t)).all()) for t in tables}
