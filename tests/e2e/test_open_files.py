"""``syncd run`` started under a low soft limit on open files, as systemd starts a
service (1,024; here 256, with the hard limit far above it): the daemon raises
the soft limit to the hard one, so that every send in flight gets its
connection instead of failing with "too many open files" and waiting for a
retry."""

from __future__ import annotations

import re
import resource
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from syncd.delivery.servers import INITIAL_IN_FLIGHT
from syncd.service.descriptors import target_limit
from syncd.testing.hipchat_server import HipChatServer
from tests.support.configs import room_tokens, token_env, trace_config
from tests.support.events import event
from tests.support.example import example
from tests.support.processes import FAST_RETRY, Proc, spawn, wait_listening
from tests.support.waiting import wait_for

LOW = 256
# Each server's first limit is INITIAL_IN_FLIGHT sends: ten of them take 320 at
# once, past what 256 descriptors leave the daemon.
SERVERS = 10
LATENCY = 5.0  # every send is still in flight when the last one goes out


def soft_limit_low() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def soft_open_files(pid: int) -> str:
    text = Path(f"/proc/{pid}/limits").read_text()
    match = re.search(r"^Max open files\s+(\S+)", text, re.MULTILINE)
    assert match, text
    return match.group(1)


@pytest.fixture
def servers() -> Iterator[list[tuple[HipChatServer, dict[str, str]]]]:
    with ExitStack() as stack:
        made = []
        for n in range(SERVERS):
            rooms = [str(10_000 + n * 100 + r) for r in range(INITIAL_IN_FLIGHT)]
            tokens = room_tokens(*rooms)
            server = stack.enter_context(HipChatServer(tokens, limits=None))
            server.misbehave(latency=LATENCY)
            made.append((server, tokens))
        yield made


def test_sends_past_a_low_soft_limit_each_get_a_connection(
    tmp_path: Path, servers: list[tuple[HipChatServer, dict[str, str]]]
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4 * LOW:
        pytest.skip(f"the hard limit on open files here ({hard}) leaves nothing to raise")
    config = tmp_path / "config"
    config.mkdir()
    env: dict[str, str] = {}
    for n, (server, tokens) in enumerate(servers):
        text = trace_config(server.url, tokens, uid=f"shop-{n}")
        (config / f"shop{n}.yaml").write_text(text.replace("every error", f"every error {n}"))
        env.update(token_env(tokens))
    proc: Proc = spawn(config, tmp_path / "state", *FAST_RETRY, env=env, preexec_fn=soft_limit_low)
    try:
        wait_listening(proc)
        soft = soft_open_files(proc.popen.pid)
        assert soft == str(target_limit(LOW, hard)), proc.log
        assert f"soft limit raised from {LOW} to {soft}" in proc.log

        answer = proc.post_events([event()])
        assert answer.status_code == 202, answer.text
        sends = SERVERS * INITIAL_IN_FLIGHT
        assert answer.json()["notifications"] == sends

        def all_answered() -> bool:
            return sum(len(s.messages) for s, _ in servers) == sends

        wait_for(all_answered, timeout=LATENCY * 4, what="every room's message")
        # All were in flight at once: one connection each, none failed to connect.
        connections = sum(len({a.client_port for a in s.attempts}) for s, _ in servers)
        assert connections == sends, proc.log
        assert "failed attempt" not in proc.log  # "... errno 24 EMFILE; retrying" before
        assert "connections at once" not in proc.log  # the HTTP front kept its cap
    finally:
        proc.stop()


def test_the_example_is_served_with_the_limit_raised(tmp_path: Path) -> None:
    """examples/integrations.yaml (every field set, its tokens from env, files and
    credentials) under the same low soft limit: the limit is raised before the
    set is loaded, and every integration of the example is served."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4 * LOW:
        pytest.skip(f"the hard limit on open files here ({hard}) leaves nothing to raise")
    ex = example(tmp_path)
    proc = spawn(
        ex.config_dir, tmp_path / "state", *ex.flags, env=ex.env, preexec_fn=soft_limit_low
    )
    try:
        wait_listening(proc)
        soft = soft_open_files(proc.popen.pid)
        assert soft == str(target_limit(LOW, hard)), proc.log
        assert f"soft limit raised from {LOW} to {soft}" in proc.log
        assert sorted(proc.status()["integrations"]) == sorted(ex.uids), proc.log
    finally:
        proc.stop()
