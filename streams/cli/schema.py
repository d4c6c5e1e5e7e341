"""``copybot schema``: write the JSON Schemas of every wire event and of the config documents.

The schemas come from the pydantic models the worker and the API validate with
(:func:`projections.contract.json_schemas`); ``docs/schemas/`` holds the committed copies (a test keeps
them current).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from projections.contract import json_schemas
from streams.cli.main import command

DEFAULT_OUT = "docs/schemas"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "schema",
        help="write the JSON Schemas of every Kafka event and of the config documents",
        description=(
            "Write one JSON Schema (draft 2020-12) per wire event kind (leaderTrade, portfolioSnapshot, "
            "configChange, tick, copyAttempt, deadLetter, configRejected, configWarning and the SPEC 13 "
            "kinds) and of the GLOBAL and USER config documents and the API's config edits, generated "
            "from the same pydantic models the worker uses. Files not written by this command are left."
        ),
    )
    cmd.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"directory (default {DEFAULT_OUT})")
    command(cmd, run)


def write_schemas(out: Path) -> list[Path]:
    """Write every schema into `out` (created if missing); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = out / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        written.append(path)
    return written


def run(args: argparse.Namespace) -> int:
    written = write_schemas(Path(args.out))
    print(f"copybot schema: wrote {len(written)} schemas to {args.out}", file=sys.stderr)
    return 0
