# Sourced by the scripts: create (or refresh) the project's virtualenv in .venv and put it on PATH.
# Idempotent: reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "==> setting up .venv (Python: $($PYTHON --version 2>&1))" >&2
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip >&2
    .venv/bin/python -m pip install --quiet -e '.[dev]' >&2
    rm -f .venv/.installed-*
    touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
# The compiled decision core (streams/native.py): rebuilt when its sources changed; COPYBOT_PURE=1 runs
# the Python sources instead. A failed build warns and leaves the sources in force.
if [ -z "${COPYBOT_NO_AUTOBUILD:-}" ]; then
    if [ -n "${COPYBOT_PURE:-}" ]; then
        [ "$(.venv/bin/python scripts/build_core.py --status)" = absent ] || .venv/bin/python scripts/build_core.py --clean
    else
        .venv/bin/python scripts/build_core.py --if-stale || true
    fi
fi
