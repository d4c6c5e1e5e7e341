"""``copybot worker --supervise``: run the worker as a child process and restart it when it dies.

The worker stops itself when continuing could be wrong (a failed send: exit 70) or when it is stuck
(the watchdog: exit 75); a crash is always safe to restart, because the log is the truth. This loop
restarts it with a backoff (1 s doubling to 30 s, back to 1 s after a minute of uptime) and passes
SIGTERM/SIGINT on to the child, then exits with the child's code. No Faust here.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

log = logging.getLogger("copybot.supervisor")

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0


def supervise(
    command: Sequence[str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    max_restarts: int | None = None,
) -> int:
    """Run `command` until it exits 0 or we are told to stop; restart it whenever it fails."""
    stopping: list[int] = []
    child: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        if child and child[0].poll() is None:
            child[0].send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    backoff, restarts = BACKOFF_START_S, 0
    try:
        while True:
            started = time.monotonic()
            child[:] = [subprocess.Popen(list(command))]
            code = child[0].wait()
            if stopping or code == 0:
                return code
            if time.monotonic() - started > HEALTHY_AFTER_S:
                backoff = BACKOFF_START_S
            restarts += 1
            if max_restarts is not None and restarts > max_restarts:
                log.error("worker exited with code %d; giving up after %d restarts", code, max_restarts)
                return code
            log.warning("worker exited with code %d; restarting in %.0f s", code, backoff)
            print(
                f"copybot supervisor: worker exited with code {code}; restarting in {backoff:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            sleep(backoff)  # backoff between restarts, not a synchronisation wait
            backoff = min(BACKOFF_MAX_S, backoff * 2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def worker_command(loglevel: str) -> list[str]:
    """The command line of one worker process (the same Python, this project's CLI)."""
    return [sys.executable, "-m", "streams.cli", "worker", "--loglevel", loglevel]
