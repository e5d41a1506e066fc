"""A mistake on the command line ends in one line naming the flag, exit 2, no traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.configs import minimal, write_files
from tests.support.processes import TEST_POLICY, run_syncd, spawn, terminate, wait_listening

ENV = {"HIPCHAT_TOKEN": "t0ken-for-the-usage-tests"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_files(tmp_path / "config", ("a.yaml", minimal("a")))


def run(config: Path, *flags: str) -> tuple[int, str]:
    result = run_syncd(
        "run", "--config", str(config), *TEST_POLICY, *flags, cwd=config.parent, env=ENV
    )
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result.returncode, result.stderr


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:99999", "127.0.0.1:http", "127.0.0.1", ":8514", "::1:8514", "1:٣"]
)
def test_a_bad_listen_address_is_a_usage_error(config: Path, tmp_path: Path, listen: str) -> None:
    code, stderr = run(config, "--state-dir", str(tmp_path / "state"), "--listen", listen)
    assert code == 2
    assert stderr.startswith("syncd run: error: --listen wants ")
    assert stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--workers", "0"), "--workers wants 1 to 4096, got 0"),
        (("--workers", "4097"), "--workers wants 1 to 4096, got 4097"),
        (("--max-in-flight", "0"), "--max-in-flight wants 1 to 1024, got 0"),
        (("--max-in-flight", "1025"), "--max-in-flight wants 1 to 1024, got 1025"),
        (("--send-timeout", "0"), "--send-timeout wants more than 0 seconds, got 0"),
        (("--send-timeout", "nan"), "--send-timeout wants more than 0 seconds, got nan"),
    ],
)
def test_worker_count_and_send_timeout_are_checked(
    config: Path, tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    code, stderr = run(config, "--state-dir", str(tmp_path / "state"), *flags)
    assert (code, stderr) == (2, f"syncd run: error: {message}\n")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_busy_port_names_the_address_and_the_flag(
    config: Path, tmp_path: Path, busy_port: int
) -> None:
    listen = f"127.0.0.1:{busy_port}"
    code, stderr = run(config, "--state-dir", str(tmp_path / "state"), "--listen", listen)
    assert code == 2
    assert (
        stderr
        == f"syncd run: error: cannot listen on {listen} (--listen): Address already in use\n"
    )


def test_a_state_dir_that_is_a_file_is_a_usage_error(config: Path, tmp_path: Path) -> None:
    afile = tmp_path / "state"
    afile.write_text("not a directory")
    code, stderr = run(config, "--state-dir", str(afile), "--listen", "127.0.0.1:0")
    assert code == 2
    assert stderr.startswith(f"syncd run: error: --state-dir {afile} is not a directory")


def test_a_state_dir_that_cannot_be_created_is_a_usage_error(config: Path) -> None:
    # Even root cannot make a directory in /proc: the daemon's own check reports it.
    code, stderr = run(config, "--state-dir", "/proc/syncd-state", "--listen", "127.0.0.1:0")
    assert code == 2
    assert stderr.startswith("syncd run: error: cannot use --state-dir /proc/syncd-state: ")


def test_an_unreadable_token_file_is_a_usage_error(config: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    code, stderr = run(
        config,
        "--state-dir",
        str(tmp_path / "state"),
        "--listen",
        "127.0.0.1:0",
        "--ingest-token-file",
        str(missing),
    )
    assert code == 2
    assert stderr == (
        f"syncd run: error: cannot read --ingest-token-file {missing}: No such file or directory\n"
    )


def test_the_daemon_listens_on_ipv6_loopback(config: Path, tmp_path: Path) -> None:
    proc = spawn(config, tmp_path / "state", "--listen", "[::1]:0", env=ENV)
    try:
        wait_listening(proc)
        assert proc.url.startswith("http://[::1]:"), proc.log
        assert requests.get(proc.url + "/healthz", timeout=5).text == "ok\n"
    finally:
        proc.stop()


def test_a_bad_attribute_for_emit_is_a_usage_error(tmp_path: Path) -> None:
    result = run_syncd(
        "emit", "--project", "p", "--fingerprint", "f", "--attribute", "novalue", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr == "syncd emit: error: --attribute wants NAME=VALUE, got 'novalue'\n"


def test_status_sends_the_token_from_the_environment_or_a_file(
    config: Path, tmp_path: Path
) -> None:
    token = "status-token-0123"
    proc = wait_listening(
        spawn(config, tmp_path / "state", env={**ENV, "SYNCD_INGEST_TOKEN": token})
    )
    try:
        refused = run_syncd("status", "--url", proc.url, cwd=tmp_path)
        assert refused.returncode == 2
        assert "answered 401: it requires a token" in refused.stderr
        by_env = run_syncd(
            "status", "--url", proc.url, cwd=tmp_path, env={"SYNCD_INGEST_TOKEN": token}
        )
        assert by_env.returncode == 0, by_env.stderr
        (tmp_path / "token").write_text(token + "\n")
        by_file = run_syncd(
            "status", "--url", proc.url, "--token-file", str(tmp_path / "token"), cwd=tmp_path
        )
        assert by_file.returncode == 0, by_file.stderr
        planned = run_syncd(
            "plan",
            "--config",
            str(config),
            "--against",
            proc.url,
            cwd=tmp_path,
            env={"SYNCD_INGEST_TOKEN": token},
        )
        assert planned.returncode == 0, planned.stderr
    finally:
        proc.stop()
    assert token not in proc.log


def test_a_second_daemon_on_one_state_dir_exits_1_naming_the_first(
    config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = wait_listening(spawn(config, state, env=ENV))
    try:
        code, stderr = run(config, "--state-dir", str(state), "--listen", "127.0.0.1:0")
        assert code == 1
        assert f"another syncd (PID {first.popen.pid}) is running on --state-dir" in stderr
    finally:
        first.stop()


def test_a_damaged_outbox_exits_1_naming_the_file_and_what_to_do(
    config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = wait_listening(spawn(config, state, env=ENV))
    # A project no integration serves: the fingerprints fill pages, nothing is sent.
    first.post_events(
        [
            {"project": "nosuch", "fingerprint": f"f{n}", "timestamp": "2026-11-26T12:00:00Z"}
            for n in range(200)
        ]
    )
    assert terminate(first) == 0
    damaged = bytearray((state / "outbox.db").read_bytes())
    for offset in range(4096, len(damaged), 509):
        damaged[offset] = 0xAB
    (state / "outbox.db").write_bytes(bytes(damaged))
    code, stderr = run(config, "--state-dir", str(state), "--listen", "127.0.0.1:0")
    assert code == 1
    assert stderr.startswith(f"syncd run: error: {state}/outbox.db is damaged (")
    assert "Move it aside" in stderr


def test_an_empty_outbox_in_a_state_dir_that_ran_before_is_reported_loudly(
    config: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = wait_listening(spawn(config, state, env=ENV))
    assert terminate(first) == 0
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state}/outbox.db{suffix}").unlink(missing_ok=True)
    (state / "outbox.db").write_bytes(b"")
    second = wait_listening(spawn(config, state, env=ENV))
    try:
        lost = f"{state}/outbox.db is empty but this state dir has run before"
        assert f"error syncd: {lost}" in second.log, second.log
        assert second.status()["outbox_lost_at_start"].startswith(lost)
        metrics = requests.get(f"{second.url}/metrics", timeout=10).text
        assert "\nsyncd_outbox_lost_at_start 1.0\n" in metrics
        shown = run_syncd("status", "--url", second.url, cwd=tmp_path, env=ENV)
        assert f"OUTBOX LOST:        {lost}" in shown.stdout, shown.stdout
    finally:
        second.stop()
