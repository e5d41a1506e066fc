"""Errors a user can act on, each with the exit code it ends a command with.

Code anywhere below the command line raises one of these with a message that
says what is wrong and which flag or file to change; the one handler in
``syncd.cli`` prints it and exits, so no command repeats print-then-return and
no traceback reaches a user for a mistake they can fix.
"""

from __future__ import annotations

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
