"""The layout's one-way rule, read from the import statements (README, "Where things are").

    cli  ->  (streams libraries, projections)  ->  models

- models/ imports only the standard library's pure parts and pydantic (nothing of streams or projections);
- projections/ may use streams.{settings, serde, topology, kafka, configedit, errors} only;
- the streams libraries never import the CLI (streams.cli) or the read side (projections);
- only streams/kafka/ imports aiokafka, only streams/worker/ imports Faust;
- argparse is the CLI's: no streams module outside streams/cli/ imports it.

Every import counts, also one inside a function. The entry shims (``__main__.py``) may import the CLI.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "streams", "projections")

MODELS_ALLOWED = {
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
PROJECTIONS_MAY_USE = {
    "streams.settings",
    "streams.serde",
    "streams.topology",
    "streams.kafka",
    "streams.configedit",
    "streams.errors",
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """Every module `path` imports (``from a.b import c`` yields ``a.b`` and ``a.b.c``)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def broken_rule(importer: str, imported: str) -> str | None:
    """Why `importer` must not import `imported`; None when it may."""
    top = imported.split(".")[0]
    if within(importer, "models"):
        return None if top in MODELS_ALLOWED else "models/ imports only pure stdlib modules and pydantic"
    if top == "aiokafka" and not within(importer, "streams.kafka"):
        return "only streams/kafka/ imports aiokafka"
    if top in ("faust", "mode") and not within(importer, "streams.worker"):
        return "only streams/worker/ imports Faust"
    if within(importer, "projections") and top == "streams":
        allowed = any(within(imported, ok) or within(ok, imported) for ok in PROJECTIONS_MAY_USE)
        return None if allowed else "projections/ may use only " + ", ".join(sorted(PROJECTIONS_MAY_USE))
    if within(importer, "streams") and not within(importer, "streams.cli"):
        if importer.endswith("__main__"):
            return None  # `python -m streams.devbroker` is an entry point, like the console script
        if within(imported, "streams.cli"):
            return "the streams libraries never import the CLI"
        if top == "projections":
            return "the streams libraries never import the read side (projections)"
        if top == "argparse":
            return "argparse belongs to streams/cli/"
    return None


def violations(root: Path) -> list[str]:
    """Every import under `root`'s packages that breaks the rule, as ``module imports name: rule``."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            importer = module_name(path, root)
            for imported in sorted(set(imports(path))):
                rule = broken_rule(importer, imported)
                if rule is not None:
                    found.append(f"{importer} imports {imported}: {rule}")
    return found


def test_every_import_follows_the_one_way_rule() -> None:
    assert violations(ROOT) == []


def test_a_module_that_breaks_the_rule_is_named(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "projections" / "bad.py").write_text("from streams.cli.terminal import table\n")
    (tmp_path / "streams" / "lib.py").write_text("def f() -> None:\n    import aiokafka\n")
    (tmp_path / "models" / "core.py").write_text("from streams.serde import encode\n")
    assert violations(tmp_path) == [
        "models.core imports streams.serde: models/ imports only pure stdlib modules and pydantic",
        "models.core imports streams.serde.encode: models/ imports only pure stdlib modules and pydantic",
        "streams.lib imports aiokafka: only streams/kafka/ imports aiokafka",
        "projections.bad imports streams.cli.terminal: projections/ may use only "
        + ", ".join(sorted(PROJECTIONS_MAY_USE)),
        "projections.bad imports streams.cli.terminal.table: projections/ may use only "
        + ", ".join(sorted(PROJECTIONS_MAY_USE)),
    ]
