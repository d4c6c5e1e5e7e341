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
    assert imported <= {"__future__", "collections", "dataclasses", "json", "typing", "models"}


ALLOWED_STREAMS = {"settings", "serde", "topology", "kafka", "configedit", "errors"}
"""What of streams/ the read side may use (issue 7): settings, wire codecs, topics, the Kafka home."""


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_projections_use_only_the_streams_libraries_meant_for_them() -> None:
    offenders = [
        f"{path.name}: {name}"
        for path in sorted((ROOT / "projections").glob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] == "faust"
        or (name.startswith("streams.") and name.split(".")[1] not in ALLOWED_STREAMS)
        or name == "streams"
    ]
    assert offenders == []
