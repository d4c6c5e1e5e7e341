"""Run schemathesis's command line with ``ast.parse`` serialized across threads.

CPython 3.11.7 (the interpreter CI gets) keeps the AST constructor's recursion depth in state shared by all
threads; two threads parsing at once can trip ``SystemError: AST constructor recursion depth mismatch``
(python/cpython#106905, fixed in 3.11.8 and 3.12.1). With ``--workers 2`` schemathesis draws cases in two
threads, and hypothesis parses the source of every ``.filter(lambda ...)`` it describes
(hypothesis/internal/lambda_sources.py ``_lambda_description``), so the race fired in one CI run as a
"Runtime Error" in the coverage phase. A lock around ``ast.parse`` removes the race without giving up the
second worker. Used by ``test_api_contract.py`` in place of the ``st`` entry point.
"""

from __future__ import annotations

import ast
import sys
import threading
from typing import Any

_parse = ast.parse
_lock = threading.Lock()


def _serialized_parse(*args: Any, **kwargs: Any) -> Any:
    with _lock:
        return _parse(*args, **kwargs)


def main() -> None:
    ast.parse = _serialized_parse
    from schemathesis.cli import schemathesis

    sys.argv[0] = "st"
    schemathesis()


if __name__ == "__main__":
    main()
