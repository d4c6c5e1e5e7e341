"""Throughput of the replay core, as a ratio to a plain orjson read-and-write of the same tape.

    python bench/replay_throughput.py [--trades 500000] [--rounds 3] [--plain] [--tape FILE]

The machine is shared and noisy, so both are measured in the same run, interleaved, and the median
ratio over the rounds is reported, by wall time and by CPU time (the process's: less sensitive to
other load). The tape comes from ``copybot sample-tape`` (cached under .cache/).

By default the venue loop's features are on (SPEC 13): the tape starts with fillModel "reports",
leaderExposureSource "snapshotElseShadowBook" and leaderBooks every second; every EXECUTE is answered
by execution reports (most filled, some partial, some rejected, some never: they expire), and one asset
in ten resolves halfway through. ``--plain`` replays the sample tape as generated (its own market
resolutions, default config: paper fills, leaderBooks every second, no reports).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams import native  # noqa: E402

if native.stale_message() is not None:  # measure the sources on disk, never an older build
    raise SystemExit(f"{Path(__file__).name}: {native.stale_message()}")

from models.state import PartitionState  # noqa: E402
from streams import sample_tape  # noqa: E402
from streams.replay import replay  # noqa: E402
from streams.sample_tape import generate  # noqa: E402


class Sink(io.RawIOBase):
    """Counts bytes written, keeps nothing (so output cost is serialisation, not memory)."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.size += len(b)
        return len(b)


def tape_path(trades: int, seed: int) -> Path:
    """The cached tape; its name carries a digest of the generator, so a changed generator makes a new one."""
    version = hashlib.sha1(Path(sample_tape.__file__).read_bytes()).hexdigest()[:8]
    path = ROOT / ".cache" / "bench" / f"sample-tape-{trades}-{seed}-{version}.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating a tape of ~{trades:,} trades -> {path.relative_to(ROOT)}", file=sys.stderr)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            for line in generate(trades=trades, seed=seed):
                out.write(line + b"\n")
        tmp.rename(path)
    return path


VENUE_CONFIG = {
    "kind": "configChange",
    "changeId": "bench-venue",
    "scope": "GLOBAL",
    "followedUserId": None,
    "changedAtMs": 0,
    "system": {"fillModel": "reports", "orderTimeoutMs": 5_000, "bookIntervalMs": 1_000},
    "sizing": {"leaderExposureSource": "snapshotElseShadowBook"},
}


def venue_tape(lines: list[bytes]) -> list[bytes]:
    """`lines` with the venue features on: built by running the core, so reports name real attempts."""
    from models.engine import process
    from models.state import PartitionState
    from streams.serde import DecodeError, decode_event

    state = PartitionState()
    out: list[bytes] = []
    assets: list[str] = []
    reports = 0

    def feed(line: bytes) -> None:
        nonlocal reports
        out.append(line)
        try:
            event = decode_event(line)
        except DecodeError:
            return
        if event.kind == "leaderTrade" and event.asset_id not in assets:
            assets.append(event.asset_id)
        for o in process(state, event):
            if not isinstance(o, dict) or o["decision"] != "EXECUTE":
                continue
            reports += 1
            status, part = [("FILLED", 10), ("FILLED", 10), ("PARTIAL", 5), ("REJECTED", 0), ("", 0)][
                reports % 5
            ]
            if status:
                shares, paid = o["targetShareMicros"] * part // 10, o["targetNotionalMicros"] * part // 10
                report = {
                    "kind": "executionReport",
                    "reportId": "r1",
                    "attemptId": o["attemptId"],
                    "followedUserId": o["followedUserId"],
                    "status": status,
                    "filledShareMicros": shares,
                    "filledNotionalMicros": paid,
                    "reportedAtMs": o["decidedAtMs"],
                }
                feed(orjson.dumps(report))

    feed(orjson.dumps(VENUE_CONFIG))
    for n, line in enumerate(lines):
        if line.startswith(b'{"kind":"configChange"'):
            line = _with_venue_keys(line)
        feed(line)
        if n == len(lines) // 2:
            for asset in assets[::10]:
                resolved = {"kind": "marketResolved", "assetId": asset, "marketId": None}
                feed(
                    orjson.dumps({**resolved, "payoutMicros": 1_000_000 * (len(out) % 2), "resolvedAtMs": 0})
                )
    return out


def _with_venue_keys(line: bytes) -> bytes:
    """A GLOBAL change's sections replace the stored ones: keep the venue keys in them."""
    change = orjson.loads(line)
    if change.get("scope") != "GLOBAL":
        return line
    for section in ("system", "sizing"):
        if isinstance(change.get(section), dict):
            change[section] = {**VENUE_CONFIG[section], **change[section]}  # type: ignore[dict-item]
    return orjson.dumps(change)


def baseline(lines: list[bytes]) -> None:
    """Read every line with orjson and write it back: the floor any JSON-lines processor pays."""
    sink = Sink()
    out = []
    for line in lines:
        out.append(orjson.dumps(orjson.loads(line)))
        if len(out) >= 512:
            sink.write(b"\n".join(out) + b"\n")
            out.clear()
    sink.write(b"\n".join(out) + b"\n")


def core(lines: list[bytes]) -> None:
    """The replay command's work: decode, decide, encode attempts and diagnostics."""
    replay(lines, Sink(), Sink())  # type: ignore[arg-type]


SLICES = 20
"""Parts of the tape each round alternates between the baseline and the core: the machine's speed
swings by 2x within seconds here (CPU time equal to wall time, so not other load), and a baseline
measured right beside each part of the core's work sees the same machine."""


def timed_round(lines: list[bytes]) -> tuple[float, float, float, float]:
    """(baseline wall, baseline CPU, core wall, core CPU) of one round: the tape in SLICES parts, each
    read by the baseline and then replayed by the core, which carries its state on to the next part
    (the end-of-input flush after the last)."""
    state = PartitionState()
    step = -(-len(lines) // SLICES)
    base_s = base_cpu = core_s = core_cpu = 0.0
    for start in range(0, len(lines), step):
        part = lines[start : start + step]
        wall, cpu = time.perf_counter(), time.process_time()
        baseline(part)
        middle, middle_cpu = time.perf_counter(), time.process_time()
        end = start + step >= len(lines)
        replay(part, Sink(), Sink(), state=state, end_of_input=end)  # type: ignore[arg-type]
        base_s, base_cpu = base_s + middle - wall, base_cpu + middle_cpu - cpu
        core_s, core_cpu = core_s + time.perf_counter() - middle, core_cpu + time.process_time() - middle_cpu
    return base_s, base_cpu, core_s, core_cpu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--trades", type=int, default=500_000, help="leader trades in the tape (default 500k)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds (default 3)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plain", action="store_true", help="the sample tape as generated (no reports)")
    parser.add_argument("--venue", action="store_true", help=argparse.SUPPRESS)  # the default now
    parser.add_argument("--tape", type=Path, help="replay this tape instead of the generated one")
    args = parser.parse_args()

    lines = (args.tape or tape_path(args.trades, args.seed)).read_bytes().splitlines()
    if not args.plain:
        lines = venue_tape(lines)
    trades = sum(1 for line in lines if line.startswith(b'{"kind":"leaderTrade"'))
    result = io.BytesIO()
    stats = replay(lines, result, Sink())  # type: ignore[arg-type]
    print(
        f"tape ({'plain' if args.plain else 'venue loop on'}): {len(lines):,} events, {trades:,} leader "
        f"trades -> {stats.attempts:,} attempts, {stats.book_events:,} book events, "
        f"{stats.reports_ignored:,} reports ignored",
        file=sys.stderr,
    )
    ratios, cpu_ratios, core_rates, base_rates, cpu_us = [], [], [], [], []
    for n in range(args.rounds):
        base_s, base_cpu, core_s, core_cpu = timed_round(lines)
        ratios.append(base_s / core_s)
        cpu_ratios.append(base_cpu / core_cpu)
        core_rates.append(trades / core_s)
        base_rates.append(len(lines) / base_s)
        cpu_us.append(core_cpu / len(lines) * 1e6)
        print(
            f"round {n + 1}/{args.rounds}: orjson read+write {base_s:6.2f}s ({base_cpu:.2f}s CPU), "
            f"replay core {core_s:6.2f}s ({core_cpu:.2f}s CPU), ratio {ratios[-1]:.3f} "
            f"(CPU {cpu_ratios[-1]:.3f})",
            file=sys.stderr,
        )
    median = statistics.median
    print(
        f"replay core: {median(core_rates):,.0f} trades/s, {median(cpu_us):.1f} µs CPU per event "
        f"(orjson baseline {median(base_rates):,.0f} lines/s); ratio {median(ratios):.3f}, "
        f"by CPU time {median(cpu_ratios):.3f} (medians of {args.rounds}; target >= 0.10; decision core "
        f"{'compiled' if native.compiled_modules() else 'interpreted'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
