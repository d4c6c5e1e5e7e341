"""The domain stays pure: models/ imports only the standard library's pure parts and pydantic."""

from __future__ import annotations

import ast
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "models"
ALLOWED = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "functools",
    "hashlib",
    "heapq",
    "itertools",
    "types",
    "typing",
    "uuid",
    "pydantic",
    "models",
}


def test_models_import_nothing_that_does_io() -> None:
    offenders = []
    for path in sorted(MODELS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] not in ALLOWED]
    assert offenders == []
