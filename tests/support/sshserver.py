"""A real OpenSSH server on loopback for the tests of ssh remotes.

``sshd`` runs in the foreground on its own config, host key and authorized key,
all in a temporary directory, and logs root in by key only (the user a
repository on this machine is readable by, with a shell that runs
``git-upload-pack``). Without ``/usr/sbin/sshd``, or not as root (sshd logs a
user in only as root), the tests skip saying why; under CI (``CI=true``) they
fail instead, so a run that should have tested ssh cannot pass without it.

A host name in the ``USER@HOST:PATH`` form cannot carry a port, so
:func:`ssh_server` can listen on port 22 of an address of its own in
127.0.0.0/8 (any such address is loopback on Linux): several tests at once
then each have their own port 22.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
# sshd refuses to start without its privilege-separation directory.
PRIVSEP_DIR = Path("/run/sshd")
USER = "root"
_START_SECONDS = 10.0
_STARTS = 5


def require_sshd(*, port_22: bool = False) -> None:
    """Skip the test when no sshd can run here (fail under CI)."""
    reason = None
    if not SSHD.exists():
        reason = f"{SSHD} is missing (apt-get install openssh-server)"
    elif os.geteuid() != 0:
        reason = "sshd logs a user in only when run as root"
    elif port_22 and not _port_22_free():
        reason = "port 22 is held on every address (a system sshd?): no loopback address has it"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def _port_22_free() -> bool:
    """Whether port 22 of a loopback address can be had: not when something
    listens on port 22 of every address."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((_own_loopback_address(), 22))
        except OSError:
            return False
    return True


def keygen(path: Path, comment: str) -> Path:
    """A new ed25519 key pair without a passphrase at ``path`` (``.pub`` beside it)."""
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path


class SshServer:
    """One sshd, restartable on the same address and port with a new host key
    (a server reinstalled, or one in the middle)."""

    def __init__(self, root: Path, address: str, port: int) -> None:
        self.root = root
        self.address = address
        self.port = port
        self.client_key = keygen(root / "client_key", "syncd-test-client")
        self.host_key = keygen(root / "host_key", "syncd-test-host")
        self.log_path = root / "sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, repo: Path) -> str:
        """``ssh://root@ADDRESS:PORT/abs/path``."""
        return f"ssh://{USER}@{self.address}:{self.port}{repo.resolve()}"

    def scp_url(self, repo: Path) -> str:
        """``root@ADDRESS:/abs/path``, git's scp-like form (which names no port)."""
        return f"{USER}@{self.address}:{repo.resolve()}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def keyscan(self, path: Path) -> Path:
        """A known-hosts file made as an operator makes one, with ``ssh-keyscan``;
        checked to hold exactly this server's host key."""
        scan = subprocess.run(
            ["ssh-keyscan", "-T", "5", "-t", "ed25519", "-p", str(self.port), self.address],
            capture_output=True,
            text=True,
            timeout=30,
        )
        lines = [line for line in scan.stdout.splitlines() if not line.startswith("#")]
        key = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        assert [line.split(" ", 1)[1] for line in lines] == [key], scan.stdout + scan.stderr
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        """Start sshd; OSError when it does not come to listen."""
        config = self._write_config()
        self.log_path.write_text("")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its per-connection children die with it
            )
        if not self._listening():
            self.stop()
            raise OSError(f"sshd did not listen on {self.address}:{self.port}: {self.log}")

    def stop(self) -> None:
        """Kill sshd and its connections' processes; reap it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def rekey(self) -> None:
        """Restart on the same address and port with a new host key."""
        self.stop()
        keygen(self.host_key, "syncd-test-host-new")
        self.start()

    def _write_config(self) -> Path:
        authorized = self.root / "authorized_keys"
        public = self.client_key.with_suffix(".pub").read_text().strip()
        authorized.write_text(f"restrict {public}\n")
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:{self.port}",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "AuthenticationMethods publickey",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {USER}",
                    # The temporary directory's modes are not sshd's business.
                    "StrictModes no",
                    "UsePAM no",
                    "UseDNS no",
                    "PrintMotd no",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        return config

    def _listening(self) -> bool:
        """Whether this sshd (not another on the port) said it listens, within a bound."""
        said = f"Server listening on {self.address} port {self.port}."
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            if said in self.log:
                return True
            if self._proc is None or self._proc.poll() is not None:
                return False
            time.sleep(0.02)
        return False


def _free_port(address: str) -> int:
    with socket.create_server((address, 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


def _own_loopback_address() -> str:
    """An address in 127.0.0.0/8 other than 127.0.0.1, picked at random."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@contextlib.contextmanager
def ssh_server(root: Path, *, port_22: bool = False) -> Iterator[SshServer]:
    """sshd on 127.0.0.1 and a free port, or with ``port_22`` on port 22 of an
    address of its own; killed and reaped at exit."""
    require_sshd(port_22=port_22)
    PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(_STARTS):
        address = _own_loopback_address() if port_22 else "127.0.0.1"
        server = SshServer(root, address, 22 if port_22 else _free_port(address))
        with contextlib.suppress(OSError):
            server.start()
            break
    else:
        raise RuntimeError(f"sshd did not start: {server.log}")
    try:
        yield server
    finally:
        server.stop()
