"""The read side stays light: the projection consumer never imports Faust (SPEC 9, STYLE)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_projection_consumer_does_not_import_faust() -> None:
    code = (
        "import sys, projections.consumer; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'faust'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_rows_is_pure_and_imports_only_the_domain() -> None:
    tree = ast.parse((ROOT / "projections" / "rows.py").read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module]
            if isinstance(node, ast.ImportFrom) and node.module
            else []
        )
    }
    assert imported <= {"__future__", "collections", "dataclasses", "json", "models"}
