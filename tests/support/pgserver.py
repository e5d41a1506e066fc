"""A PostgreSQL server of a test's own, which the test may restart or stop.

The machine's server (``tests.support.postgres``) is shared by tests running in
parallel: restarting it would end their connections too. A test that restarts
the server runs this one instead: Debian's binaries, a data directory in a
temporary directory, trust authentication, on 127.0.0.1 and a free port, its
unix socket beside its data. initdb refuses to run as root, so as root the
server runs as the ``postgres`` user.

Without the binaries (or, as root, without a ``postgres`` user) the test skips,
saying why; under CI (``CI=true``) it fails instead, as the shared server's
tests do.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.waiting import wait_for

BINARIES = "/usr/lib/postgresql/*/bin"
USER = "postgres"
# Settings for a throwaway server: nothing it holds must outlive a crash of the
# machine, so no flushing to disk; and room for several daemons' pools.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
}
WAIT = 60  # seconds pg_ctl waits for a start or a stop


def _version(bin_dir: str) -> tuple[int, ...]:
    name = Path(bin_dir).parent.name
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def find_binaries() -> Path | None:
    """The newest installed version's bin directory, if one has initdb and pg_ctl."""
    found = [
        d for d in glob.glob(BINARIES) if all(Path(d, b).exists() for b in ("initdb", "pg_ctl"))
    ]
    return Path(max(found, key=_version)) if found else None


def _unavailable(reason: str) -> None:
    message = f"no private PostgreSQL server: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class PgServer:
    """A running private server; ``url`` names its ``postgres`` database."""

    bin_dir: Path
    root: Path  # the temporary directory: data, socket and log
    port: int
    as_user: tuple[str, ...]  # the command prefix that runs a binary as the server's user

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def log(self) -> str:
        """What the server wrote to its log (for a failing test's output)."""
        with contextlib.suppress(OSError):
            return self.log_file.read_text(errors="replace")
        return ""

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=WAIT + 30)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"pg_ctl {args[0]} failed ({result.returncode}): "
                f"{result.stdout}{result.stderr}\n{self.log()[-4000:]}"
            )
        return result

    def start(self) -> None:
        self._ctl("start", "-w", "-t", str(WAIT), "-l", str(self.log_file))

    def restart(self) -> None:
        """A fast restart, as an operator's: every connection ends at once, new ones
        are refused until the server is back, and what was committed stays."""
        self._ctl("restart", "-w", "-t", str(WAIT), "-m", "fast", "-l", str(self.log_file))

    def stop(self) -> None:
        self._ctl("stop", "-w", "-t", str(WAIT), "-m", "fast")

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        return None

    def kill(self) -> None:
        """Gone whatever state it is in: an immediate stop, then SIGKILL to what is left."""
        if self.postmaster_pid() is None:
            return
        self._ctl("stop", "-w", "-t", "10", "-m", "immediate", check=False)
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not _alive(pid), timeout=10, what="the postmaster to exit")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _as_user() -> tuple[tuple[str, ...], pwd.struct_passwd | None]:
    """How to run the server's binaries: as ``postgres`` when this is root."""
    if os.geteuid() != 0:
        return (), None
    runuser = shutil.which("runuser")
    try:
        account = pwd.getpwnam(USER)
    except KeyError:
        account = None
    if runuser is None or account is None:
        _unavailable(f"running as root, and no runuser or no {USER!r} user to run initdb as")
    assert runuser is not None and account is not None
    return (runuser, "-u", USER, "--"), account


def _initdb(server: PgServer) -> None:
    command = [
        *server.as_user,
        str(server.bin_dir / "initdb"),
        "-D",
        str(server.data),
        "--auth=trust",
        f"--username={USER}",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed ({result.returncode}): {result.stdout}{result.stderr}")
    settings = {**SETTINGS, "port": str(server.port), "unix_socket_directories": f"'{server.root}'"}
    with (server.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.writelines(f"{name} = {value}\n" for name, value in settings.items())


@contextmanager
def private_server() -> Iterator[PgServer]:
    """A started server, killed and removed afterwards whatever happened."""
    bin_dir = find_binaries()
    if bin_dir is None:
        _unavailable(f"no initdb and pg_ctl under {BINARIES} (install postgresql)")
    assert bin_dir is not None
    as_user, account = _as_user()
    root = Path(tempfile.mkdtemp(prefix="syncd-pg-"))
    try:
        if account is not None:
            os.chown(root, account.pw_uid, account.pw_gid)
        server = PgServer(bin_dir, root, _free_port(), as_user)
        _initdb(server)
        try:
            server.start()
            yield server
        finally:
            server.kill()
    finally:
        shutil.rmtree(root, ignore_errors=True)
