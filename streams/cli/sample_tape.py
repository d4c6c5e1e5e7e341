"""``copybot sample-tape``: write the deterministic sample tape (see :mod:`streams.sample_tape`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.cli.main import command


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tape = sub.add_parser(
        "sample-tape",
        help="write a deterministic sample tape (the seed's $200 bankroll / whale example)",
        description=(
            "Write a realistic, deterministic tape: a $200 bankroll following three small leaders "
            "(budgets $60/$60/$50) and a whale ($30 budget, $100k-$300k exposure) who sprays tiny "
            "trades, with snapshots, config changes, bursts, sells and duplicates."
        ),
    )
    tape.add_argument(
        "-n", "--trades", type=int, default=3_000, help="about how many leader trades (default 3000)"
    )
    tape.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    tape.add_argument("-o", "--output", help="file to write (default stdout)")
    command(tape, run)


def run(args: argparse.Namespace) -> int:
    from streams.sample_tape import write

    if not args.output:
        try:
            write(sys.stdout.buffer, trades=args.trades, seed=args.seed)
        finally:
            sys.stdout.buffer.flush()
        return 0
    with open(args.output, "wb") as out:
        write(out, trades=args.trades, seed=args.seed)
    print(f"wrote {Path(args.output)}", file=sys.stderr)
    return 0
