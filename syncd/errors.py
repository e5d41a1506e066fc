"""Errors a user can act on, each with the exit code it ends a command with.

Code anywhere below the command line raises one of these with a message that
says what is wrong and which flag or file to change; the one handler,
:func:`handled`, prints it and picks the exit code, so no command repeats print-then-return and
no traceback reaches a user for a mistake they can fix.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_OK = 0
EXIT_FAILED = 1  # invalid config, refused event, failed check
EXIT_USAGE = 2  # bad flag or argument, unusable path or address
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


class SyncdError(Exception):
    """Base of the errors the handler turns into a message and an exit code."""

    exit_code = EXIT_FAILED


class Failure(SyncdError):
    """The command ran and the answer is no: invalid, refused, unreachable."""

    exit_code = EXIT_FAILED


class UsageError(SyncdError):
    """The command cannot run as asked: a bad flag, path or address."""

    exit_code = EXIT_USAGE


class Result:
    """The exit code a handled command ends with."""

    code: int = EXIT_FAILED


@contextmanager
def handled(command: str) -> Iterator[Result]:
    """Run a command: its errors become one line on stderr and an exit code.

    An unexpected exception is a bug in syncd: one line says so; set
    ``SYNCD_DEBUG=1`` to see the traceback.
    """
    result = Result()
    try:
        yield result
    except SyncdError as exc:
        print(f"syncd {command}: error: {exc}", file=sys.stderr)
        result.code = exc.exit_code
    except KeyboardInterrupt:
        print(f"syncd {command}: interrupted", file=sys.stderr)
        result.code = EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("SYNCD_DEBUG") == "1":
            traceback.print_exc()
        print(
            f"syncd {command}: internal error (a bug in syncd, please report it): "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        result.code = EXIT_FAILED
