"""The README's systemd unit for ``syncd run --git``, run as systemd would run it:
the operator's files copied into a credentials directory as its
``LoadCredential=`` lines say, ``${CREDENTIALS_DIRECTORY}`` expanded, its
``ExecStart`` split into words, against a git server and a HipChat server on
loopback. Only what belongs to this machine is changed, and every change is
listed below.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.testing import HipChatServer
from tests.e2e.test_run_git_source import github_push
from tests.support.configs import trace_config, write_files
from tests.support.events import numbered_events
from tests.support.gitrepo import GitRepo, make_repo
from tests.support.gitserver import SmartHttp, processes, smart_http
from tests.support.paths import ROOT
from tests.support.processes import Proc, start_as_unit, terminate
from tests.support.waiting import wait_for


@dataclass(frozen=True)
class Here:
    """What this machine has in place of the README's values."""

    syncd: str
    state: str
    etc: str  # where the operator keeps the files the unit loads as credentials
    git_url: str  # the repository on the loopback smart-HTTP server
    hipchat: str  # the HipChat test server


# Each value of the README's unit that names a machine, and what a test run
# gives instead; nothing else in the block is changed.
SUBSTITUTIONS: dict[str, Callable[[Here], str]] = {
    # The README installs syncd in /opt/syncd; here it is this virtualenv's.
    "/opt/syncd/bin/syncd": lambda here: here.syncd,
    "/var/lib/syncd": lambda here: here.state,
    "/etc/syncd": lambda here: here.etc,
    # The same repository name on the smart-HTTP server, whose basic auth wants
    # the user in the URL (the README's names none: git sends "git"). Plain http,
    # hence --allow-http-git below.
    "https://github.com/acme/hipchat-config.git": lambda here: here.git_url,
    # Plain http, hence --allow-http-endpoint below.
    "https://hipchat.example.com": lambda here: here.hipchat,
}
# Flags a loopback run needs beyond the README's, each with why.
ADDED_FLAGS: dict[tuple[str, ...], str] = {
    ("--allow-http-git",): "the smart-HTTP server speaks http, not https",
    ("--allow-http-endpoint",): "the HipChat test server speaks http, not https",
    ("--listen", "127.0.0.1:0"): "a free port, not the default 8514 another run may hold",
}
# What systemd's environment would hold: its default PATH, and (as Environment= lines
# an operator adds) the room token the repository's config names and an ingest
# token, as the README's section on the HTTP API says.
ROOM = "4001"
ROOM_TOKEN = "readme-git-room-token-4001"
INGEST_TOKEN = "readme-git-ingest-token-5b2e"
# The smart-HTTP server's password, which the unit loads as a credential.
GIT_TOKEN = "ghp_readmeGitTokenNeverShown81f3"
WEBHOOK_SECRET = "readme-webhook-secret-0c7d"
# The files the operator writes in /etc/syncd, by name.
OPERATOR_FILES = {"git-token": GIT_TOKEN, "webhook-secret": WEBHOOK_SECRET}
MARKER = "Under systemd, with the token as a credential"


def readme_unit() -> str:
    """The ```ini block that follows the README's sentence introducing it."""
    readme = (ROOT / "README.md").read_text()
    assert readme.count(MARKER) == 1, MARKER
    after = readme[readme.index(MARKER) :]
    match = re.search(r"^```ini\n(.*?)^```$", after, re.M | re.S)
    assert match is not None, f"no ```ini block after {MARKER!r}"
    return match.group(1)


def substituted(unit: str, here: Here) -> str:
    for value, replacement in SUBSTITUTIONS.items():
        assert value in unit, f"the README's unit no longer names {value}"
        unit = unit.replace(value, replacement(here))
    return unit


def settings(unit: str) -> list[tuple[str, str]]:
    """``(key, value)`` in order, a line ending in ``\\`` joined to the next as
    systemd joins them (the backslash read as a space)."""
    joined = re.sub(r"\\\n", " ", unit)
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.append((key.strip(), value.strip()))
    return found


def credentials(unit: str) -> dict[str, str]:
    """``LoadCredential=ID:PATH`` as ``{ID: PATH}``."""
    return dict(value.split(":", 1) for key, value in settings(unit) if key == "LoadCredential")


def exec_starts(unit: str) -> list[str]:
    """The ``ExecStart=`` command lines as systemd reads them: an empty one
    (which a drop-in needs before its own) drops those before it."""
    lines: list[str] = []
    for key, value in settings(unit):
        if key == "ExecStart":
            lines = [*lines, value] if value else []
    return lines


def command(unit: str, credentials_dir: Path) -> list[str]:
    """The ``ExecStart`` words, ``${CREDENTIALS_DIRECTORY}`` expanded in each
    (systemd expands ``${NAME}`` within a word), then the flags added."""
    (exec_start,) = exec_starts(unit)
    words = [
        word.replace("${CREDENTIALS_DIRECTORY}", str(credentials_dir))
        for word in shlex.split(exec_start)
    ]
    assert not [word for word in words if "$" in word], words
    return [*words, *(word for flag in ADDED_FLAGS for word in flag)]


@pytest.fixture
def hipchat() -> Iterator[HipChatServer]:
    with HipChatServer({ROOM: ROOM_TOKEN}, limits=None) as server:
        yield server


@dataclass(frozen=True)
class Served:
    work: GitRepo
    bare: Path
    server: SmartHttp

    def push(self, name: str, text: str) -> str:
        write_files(self.work.path, (name, text))
        sha = self.work.commit_all(name)
        self.work("push", "-q", str(self.bare), "main")
        return sha


@pytest.fixture
def served(tmp_path: Path, hipchat: HipChatServer) -> Iterator[Served]:
    """The README's repository (its name, ``--git-ref``, ``--git-path``) on a
    smart-HTTP server that wants the token as its password."""
    work = make_repo(tmp_path / "work")
    write_files(
        work.path,
        ("integrations/shop.yaml", trace_config(hipchat.url, [ROOM])),
        # YAML of another tool's beside it, which only --git-path keeps out.
        ("docs/site.yaml", "title: HipChat integrations\n"),
    )
    work.commit_all("first")
    root = tmp_path / "served"
    bare = root / "hipchat-config.git"
    root.mkdir()
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True, env=work.env
    )
    with smart_http(root, token=GIT_TOKEN) as server:
        yield Served(work, bare, server)


def _here(tmp_path: Path, served: Served, hipchat: HipChatServer) -> Here:
    return Here(
        syncd=str(Path(sys.executable).parent / "syncd"),
        state=str(tmp_path / "state"),
        etc=str(tmp_path / "etc"),
        git_url=served.server.repo_url(served.bare.name),
        hipchat=hipchat.url,
    )


def load_credentials(unit: str, here: Here, credentials_dir: Path) -> None:
    """The operator's files written, then copied by the unit's ``LoadCredential=``
    lines into the credentials directory, as systemd does at start."""
    for name, content in OPERATOR_FILES.items():
        write_files(Path(here.etc), (name, content + "\n"))
    credentials_dir.mkdir(mode=0o700)
    for credential, source in credentials(unit).items():
        path = credentials_dir / credential
        shutil.copyfile(source, path)
        path.chmod(0o400)


def _start(unit: str, credentials_dir: Path) -> Proc:
    env = {f"HIPCHAT_TOKEN_{ROOM}": ROOM_TOKEN, "SYNCD_INGEST_TOKEN": INGEST_TOKEN}
    return start_as_unit(command(unit, credentials_dir), credentials_dir, env)


AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}


def status(proc: Proc) -> dict[str, Any]:
    answer = requests.get(proc.url + "/status", headers=AUTH, timeout=5)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def applied(proc: Proc, sha: str) -> bool:
    return bool(status(proc)["applied_revision"] == f"git:{sha}")


def exposed(proc: Proc) -> bytes:
    """What a running daemon shows: ``/status``, ``/metrics``, its command line
    and environment, and every process's command line (git's and its helpers')."""
    pid = proc.popen.pid
    return b"".join(
        [
            json.dumps(status(proc)).encode(),
            requests.get(proc.url + "/metrics", headers=AUTH, timeout=5).content,
            Path(f"/proc/{pid}/cmdline").read_bytes(),
            Path(f"/proc/{pid}/environ").read_bytes(),
            *(cmdline for _, cmdline, _ in processes()),
        ]
    )


@pytest.mark.slow
def test_the_readmes_git_unit_runs_as_written(
    tmp_path: Path, served: Served, hipchat: HipChatServer
) -> None:
    """Seen to fail with the README's block changed: ``--git-webhook-secret-file``
    left out (the webhook is 404), ``--git-token-file`` left out or its credential
    renamed in ``LoadCredential=`` only (no fetch is let in: never ready),
    ``--git-path integrations`` left out (the other YAML is read: rejected)."""
    here = _here(tmp_path, served, hipchat)
    unit = substituted(readme_unit(), here)
    load_credentials(unit, here, tmp_path / "credentials")
    first = served.work("rev-parse", "HEAD")
    proc = _start(unit, tmp_path / "credentials")
    try:
        assert requests.get(proc.url + "/readyz", timeout=5).status_code == 200
        wait_for(lambda: applied(proc, first), timeout=20, what="the first commit applied")
        second = served.push(
            "integrations/two.yaml",
            trace_config(hipchat.url, [ROOM], uid="shop-two").replace("every", "all"),
        )
        answer = github_push(proc.url, WEBHOOK_SECRET)
        assert answer.status_code == 202, answer.text
        wait_for(lambda: applied(proc, second), timeout=10, what="the pushed commit applied")
        assert set(status(proc)["integrations"]) == {"shop-trace", "shop-two"}
        events = requests.post(
            proc.url + "/v1/events", json=numbered_events(0, 1), headers=AUTH, timeout=30
        )
        assert events.status_code == 202, events.text
        hipchat.wait_for_messages(2, room=ROOM, timeout=20)  # one per integration
        # The token reached the server as the password of authorized fetches.
        assert any(seen.status == 200 and seen.authorization for seen in served.server.seen)
        shown = exposed(proc)
    finally:
        assert terminate(proc) == 0
    for text in (proc.log.encode(), shown):
        assert GIT_TOKEN.encode() not in text
        assert WEBHOOK_SECRET.encode() not in text


def _placeholders(tmp_path: Path) -> Here:
    """Values of the right kind for a unit that is only read, never started."""
    return Here(
        syncd=str(Path(sys.executable).parent / "syncd"),
        state=str(tmp_path / "state"),
        etc=str(tmp_path / "etc"),
        git_url="http://syncd@127.0.0.1:9/hipchat-config.git",
        hipchat="http://127.0.0.1:9",
    )


def verify(unit: Path) -> list[str]:
    """What ``systemd-analyze verify`` says of ``unit``, with what
    test_systemd_unit.py tolerates left out: on systemd before 253, that
    ``Type=notify-reload`` is unknown."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if _systemd_version(tool) < 253:
        lines = [line for line in lines if "notify-reload" not in line]
    if result.returncode != 0:
        lines.append(f"exit status {result.returncode}")
    return lines


def _systemd_version(tool: str) -> int:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"systemd (\d+)", out)
    return int(match.group(1)) if match else 0


def test_the_readmes_git_unit_is_a_valid_unit(tmp_path: Path) -> None:
    """The block with a ``[Unit]`` section, as a unit of its own. Seen to fail
    with ``LoadCredentials=`` (a typo) in the README's block."""
    unit = substituted(readme_unit(), _placeholders(tmp_path))
    path = tmp_path / "syncd-git.service"
    path.write_text(f"[Unit]\nDescription=syncd following a git remote\n\n{unit}")
    assert verify(path) == []


def test_the_readmes_git_unit_is_a_valid_drop_in_for_the_shipped_unit(tmp_path: Path) -> None:
    """The block as ``systemctl edit syncd`` would add it to the shipped unit,
    the way that unit's comments add credentials."""
    shipped = (ROOT / "contrib" / "systemd" / "syncd.service").read_text()
    here = _placeholders(tmp_path)
    path = tmp_path / "syncd.service"
    path.write_text(shipped.replace("ExecStart=/opt/syncd/bin/syncd", f"ExecStart={here.syncd}"))
    drop_in = tmp_path / "syncd.service.d" / "git.conf"
    drop_in.parent.mkdir()
    drop_in.write_text(substituted(readme_unit(), here))
    assert verify(path) == []
