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
            "trades, with snapshots, config changes, bursts, sells, duplicates, and one market of each "
            "small leader resolving (alice's won, bob's and carol's lost; the settlement frees alice's HARD "
            "budget)."
        ),
    )
    tape.add_argument(
        "-n", "--trades", type=int, default=3_000, help="about how many leader trades (default 3000)"
    )
    tape.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    tape.add_argument(
        "--no-resolutions",
        dest="resolutions",
        action="store_false",
        help="no market resolutions: the tape as generated before resolutions existed (same bytes)",
    )
    tape.add_argument(
        "--fill-model",
        choices=("paper", "reports"),
        default="paper",
        help="system.fillModel in the initial GLOBAL change (default paper; reports: SPEC 13.3)",
    )
    tape.add_argument("-o", "--output", help="file to write (default stdout)")
    command(tape, run)


def run(args: argparse.Namespace) -> int:
    from streams.sample_tape import write

    options = {"resolutions": args.resolutions, "fill_model": args.fill_model}
    if not args.output:
        try:
            write(sys.stdout.buffer, trades=args.trades, seed=args.seed, **options)
        finally:
            sys.stdout.buffer.flush()
        return 0
    with open(args.output, "wb") as out:
        write(out, trades=args.trades, seed=args.seed, **options)
    print(f"wrote {Path(args.output)}", file=sys.stderr)
    return 0
