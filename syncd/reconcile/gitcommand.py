"""How syncd starts git: one hardened environment and set of options for every
call, and a deadline that ends git and everything it started.

git runs what its config names (hooks, filters, an fsmonitor, credential
helpers, a pager) and reads config from the system, the user's home and its
own environment variables. syncd runs git in repositories others write to (a
checkout the operator named, a mirror of a remote anyone with push access
fills), so every call starts from nothing: no system or global config, none of
the daemon's ``GIT_*`` variables, hooks and fsmonitor off, no prompt, messages
in English (the error shown is git's own line). The local checkout's questions
(``git``) and the remote's fetches (``gitmirror``) share this, so they cannot
drift apart.

A fetch starts helpers of its own (``git-remote-https``, ``ssh``,
``index-pack``); a deadline that killed git alone would leave them running
with the connection open. Each call is the leader of a new process group, and
the deadline kills the group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from syncd.config.diagnostics import printable
from syncd.config.secrets import redact

# Options every git call takes: no hook and no fsmonitor can run a command.
HARDENED_OPTIONS: tuple[str, ...] = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
)
# What the daemon's environment may hold that would make git or ssh ask someone.
_DROPPED = frozenset({"SSH_ASKPASS", "SSH_ASKPASS_REQUIRE"})
# git's options before the command that take the next argument as their value.
_TAKES_VALUE = frozenset({"-c", "-C"})
# How often a running call's watch (the size of what a fetch brought) is asked.
WATCH_STEP = 0.02
# How long a killed call's pipes are drained before giving up on them.
_REAP_SECONDS = 5.0
# git's last line after any failure of ssh (or another transport program):
# whatever the reason, the line before says it.
_UNREADABLE = "Could not read from remote repository."
# The most of that line before kept in a reason: it may be the peer's to write.
_MAX_CAUSE = 200


class GitError(Exception):
    """A git call that failed; the text names what failed and is safe to show
    (control characters escaped, the secrets the call knew redacted)."""


class GitFailed(GitError):
    """A git call that ended with a status other than 0 (``status``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class GitTimeout(GitError):
    """A git call cut at its deadline."""


class GitStopped(GitError):
    """A git call stopped by its watch (a fetch past its size limit, a daemon stopping)."""


class GitMissing(GitError):
    """git is not installed."""


# Asked while a call runs: an error to stop it with, or None to let it go on.
Watch = Callable[[], GitStopped | None]


def environment(
    *,
    home: Path | None = None,
    ceiling: Path | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The daemon's environment without git's own variables (which could point git
    at another repository, config or trace file), and git's system and global
    config off. ``home`` replaces HOME (git and ssh find per-user files there);
    ``ceiling`` stops git's search for a repository above it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k not in _DROPPED}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_ATTR_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
    )
    if home is not None:
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    if ceiling is not None:
        env["GIT_CEILING_DIRECTORIES"] = str(ceiling)
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Call:
    """One git invocation: its arguments after ``git``, where, with what, for how long.

    ``secrets`` are redacted from any error text the call raises.
    """

    args: tuple[str, ...]
    env: Mapping[str, str]
    timeout: float
    cwd: Path | None = None
    secrets: tuple[str, ...] = ()

    @property
    def argv(self) -> list[str]:
        return ["git", "--no-pager", *HARDENED_OPTIONS, *self.args]

    @property
    def verb(self) -> str:
        """The git command run, for messages (``fetch``, ``ls-tree``): the first
        argument that is neither an option nor the value of ``-c`` or ``-C``."""
        args = iter(self.args)
        for arg in args:
            if arg in _TAKES_VALUE:
                next(args, None)
            elif not arg.startswith("-"):
                return arg
        return "git"

    def failed(self, reason: str, status: int = -1) -> GitFailed:
        return GitFailed(self.safe(f"git {self.verb} failed: {reason}"), status)

    def safe(self, text: str) -> str:
        return printable(redact(text, self.secrets))


@dataclass(frozen=True)
class Repo:
    """A repository syncd runs git in, with the options and environment every call
    there takes."""

    git_dir: Path
    env: Mapping[str, str]
    options: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()

    def call(self, *args: str, timeout: float) -> Call:
        return Call(
            (*self.options, f"--git-dir={self.git_dir}", *args),
            self.env,
            timeout,
            cwd=self.git_dir,
            secrets=self.secrets,
        )

    def run(
        self,
        *args: str,
        timeout: float,
        watch: Watch | None = None,
    ) -> bytes:
        return run(self.call(*args, timeout=timeout), watch=watch)

    def holds(self, *args: str, timeout: float) -> bool:
        """For the calls that answer yes or no by their status (``merge-base
        --is-ancestor``): True for 0, False for 1; GitError for anything else."""
        try:
            self.run(*args, timeout=timeout)
        except GitFailed as exc:
            if exc.status == 1:
                return False
            raise
        return True

    def text(self, *args: str, timeout: float) -> str:
        """A call's output as text, stripped."""
        return self.run(*args, timeout=timeout).decode("utf-8", "surrogateescape").strip()


def run(
    call: Call,
    *,
    input: bytes | None = None,
    watch: Watch | None = None,
) -> bytes:
    """Run ``call`` to its end; its standard output. Raises GitTimeout past the
    deadline, GitFailed when git fails, and what ``watch`` (asked every
    ``WATCH_STEP`` s while git runs) returns once it returns a reason to stop."""
    proc = _start(call, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL)
    deadline = time.monotonic() + call.timeout
    pending = input
    while True:
        left = max(0.0, deadline - time.monotonic())
        try:
            out, err = proc.communicate(pending, timeout=min(left, WATCH_STEP) if watch else left)
            break
        except subprocess.TimeoutExpired:
            pending = None  # sent by the first call; asking again would raise
            _stop_if_due(call, proc, deadline, watch)
    if proc.returncode != 0:
        raise call.failed(_reason(err, proc.returncode), proc.returncode)
    return out


def _stop_if_due(
    call: Call,
    proc: subprocess.Popen[bytes],
    deadline: float,
    watch: Watch | None,
) -> None:
    if time.monotonic() >= deadline:
        _kill(proc)
        raise GitTimeout(call.safe(_timed_out(call)))
    stop = watch() if watch is not None else None
    if stop is not None:
        _kill(proc)
        raise stop


def _timed_out(call: Call) -> str:
    return f"git {call.verb} timed out after {call.timeout:g} s"


@contextmanager
def streaming(call: Call) -> Iterator[subprocess.Popen[bytes]]:
    """``call`` started with pipes to talk to it (``cat-file --batch``); killed with
    its group when the block ends, or at its deadline, after which its pipes read
    as closed. A read cut short that way raises GitTimeout from the block."""
    proc = _start(call, stdin=subprocess.PIPE)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _kill_group(proc)

    timer = threading.Timer(call.timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        yield proc
    except Exception:
        if expired.is_set():
            raise GitTimeout(call.safe(_timed_out(call))) from None
        raise
    finally:
        timer.cancel()
        _kill(proc)


def read_exactly(stream: IO[bytes], size: int, call: Call) -> bytes:
    """``size`` bytes from a streaming call's output, or GitError when it ended first."""
    data = stream.read(size)
    if len(data) != size:
        raise call.failed("its output ended early")
    return data


def _start(call: Call, stdin: int) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            call.argv,
            cwd=call.cwd,
            env=dict(call.env),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise GitMissing("git is not installed") from None
    except OSError as exc:
        raise call.failed(exc.strerror or str(exc)) from None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """End the call and whatever it started, and reap it."""
    if proc.poll() is None:
        _kill_group(proc)
    with suppress(subprocess.TimeoutExpired, OSError, ValueError):
        proc.communicate(timeout=_REAP_SECONDS)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _reason(stderr: bytes, status: int) -> str:
    """git's own words for the failure: its last ``fatal:`` or ``error:`` line,
    else its first line. git ends every failure of the program it reached the
    remote through (ssh) with one line that does not say why; the line before
    it is that program's (``Host key verification failed.``, ``Permission
    denied (publickey).``), which does, and is kept in front."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    for index in range(len(lines) - 1, -1, -1):
        said = _message(lines[index])
        if said is None:
            continue
        if said != _UNREADABLE or index == 0:
            return said
        return _with_cause(lines[index - 1], said)
    return lines[0] if lines else f"exit status {status}"


def _message(line: str) -> str | None:
    """The text of a ``fatal:`` or ``error:`` line; None for another line."""
    for prefix in ("fatal:", "error:"):
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return None


def _with_cause(before: str, said: str) -> str:
    """``said`` (the remote could not be read) after why, from the line
    ``before`` it: the transport's, or the peer's through it (a server's git, a
    banner), so one line, cut at ``_MAX_CAUSE`` characters."""
    cause = (_message(before) or before).rstrip(".").strip()
    if not cause:
        return said
    if len(cause) > _MAX_CAUSE:
        cause = cause[:_MAX_CAUSE] + "..."
    return f"{cause} (git: {said.rstrip('.')})"
