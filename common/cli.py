"""One way every ``python -m`` command ends: ``error: ...`` and exit 2 for user errors, tracebacks for bugs.

    if __name__ == "__main__":
        sys.exit(cli.run(main))

``main(argv)`` returns an exit status (None counts as 0). A :class:`~common.errors.UserError`
becomes one ``error: <message>`` line on stderr and its ``exit_code``; anything else is a bug and
raises with its traceback. Output piped into a program that stops reading early
(``python -m etl.ingest ... | head -1``) is not an error: the work is done, the rest of the output
is dropped and the status is main's (0 when the pipe broke before main returned).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from common.errors import UserError


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a command's ``main`` and turn its outcome into an exit status (module docstring)."""
    try:
        status = main(argv)
        sys.stdout.flush()  # a broken pipe shows here, not at interpreter exit
        return int(status or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (| head): point stdout at /dev/null so the interpreter's final
        # flush does not raise again, as Python's documentation advises for SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
