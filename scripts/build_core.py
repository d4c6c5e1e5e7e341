"""Compile the decision core with mypyc, or remove the compiled modules (see streams/native.py).

    scripts/build-core             build (about a minute; the same sources, about 1.5x faster)
    scripts/build-core --if-stale  build only when the sources changed since the last build
    scripts/build-core --clean     remove the compiled modules: the Python sources run
    scripts/build-core --status    say whether the compiled core is absent, current or stale

scripts/_env.sh runs ``--if-stale`` (``--clean`` when COPYBOT_PURE=1), so every script and CI runs the
compiled core of the sources on disk. A failed build leaves the Python sources in force, with a warning.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.native import COMPILED, ROOT, RUNTIME, STAMP, extension_files, source_digest, status


def clean() -> int:
    removed = extension_files()
    for path in removed:
        path.unlink()
    STAMP.unlink(missing_ok=True)
    return len(removed)


def build() -> int:
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        clean()
        print("build-core: no C compiler (cc): the decision core runs as Python sources", file=sys.stderr)
        return 0
    digest = source_digest()  # of the sources as the build starts: an edit during it makes it stale
    print(
        f"==> compiling the decision core with mypyc ({len(COMPILED)} modules, about a minute)",
        file=sys.stderr,
    )
    started = time.monotonic()
    clean()
    (ROOT / "build").mkdir(exist_ok=True)
    setup = ROOT / "build" / "setup_core.py"
    # mypyc's own CLI (python -m mypyc) puts the runtime shared by the modules at the top level, where
    # an installed copybot cannot import it; a group name puts it in the models package.
    setup.write_text(
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        f"setup(name='copybot-core', ext_modules=mypycify({list(COMPILED)!r}, opt_level='3', "
        f"group_name={RUNTIME!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, str(setup), "build_ext", "--inplace"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        clean()
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        print(f"build-core: mypyc failed; the Python sources run instead:\n{tail}", file=sys.stderr)
        return 1
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    STAMP.write_text(digest + "\n")
    print(f"==> compiled in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--if-stale", action="store_true", help="build only when the sources changed")
    what.add_argument("--clean", action="store_true", help="remove the compiled modules")
    what.add_argument("--status", action="store_true", help="print absent, current or stale")
    args = parser.parse_args()
    if args.status:
        print(status())
        return 0
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    with (STAMP.parent / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two scripts starting at once build once
        if args.clean:
            print(f"build-core: removed {clean()} compiled modules", file=sys.stderr)
            return 0
        if args.if_stale and status() == "current":
            return 0
        return build()


if __name__ == "__main__":
    raise SystemExit(main())
