"""A HipChat server that holds every request open: it gets at most half the
delivery workers, so the integrations on another server are still delivered."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from syncd.testing import Fault, HipChatServer
from tests.support.configs import room_tokens, token_env, trace_config, write_files
from tests.support.events import event
from tests.support.processes import start, terminate
from tests.support.waiting import wait_for

SLOW = room_tokens("7001", "7002", "7003", "7004")
GOOD = room_tokens("7101")


def test_a_server_holding_every_request_gets_half_the_workers(tmp_path: Path) -> None:
    slow = HipChatServer(SLOW, limits=None).start()
    try:
        with HipChatServer(GOOD, limits=None) as good:
            slow.inject(Fault.trickle(0.5), times=100)
            config = write_files(
                tmp_path / "config",
                ("slow.yaml", trace_config(slow.url, SLOW, uid="slow-trace")),
                (
                    "good.yaml",
                    trace_config(good.url, GOOD, uid="good-trace").replace(
                        "project: shop", "project: other"
                    ),
                ),
            )
            proc = start(
                config,
                tmp_path / "state",
                "--workers",
                "4",
                "--send-timeout",
                "600",
                env=token_env({**SLOW, **GOOD}),
            )
            try:
                assert proc.post_events([event("shop")]).status_code == 202
                wait_for(
                    lambda: len(slow.attempts) == 2,
                    timeout=20,
                    what="two sends held by the slow server",
                )
                assert proc.post_events([event("other")]).status_code == 202
                wait_for(
                    lambda: len(good.messages) == 1,
                    timeout=20,
                    what="the other server's notification, with the slow one still holding",
                )
                assert [a.fault for a in slow.attempts] == ["trickle", "trickle"]
            finally:
                slow.close()
                assert terminate(proc) == 0, proc.log[-3000:]
    finally:
        slow.close()


def test_a_server_that_is_down_is_not_asked_once_per_room(tmp_path: Path) -> None:
    rooms = room_tokens(*(str(7200 + n) for n in range(10)))
    with HipChatServer(rooms, limits=None) as down:
        down.inject(Fault.status(503, headers={"Retry-After": "30"}), times=1000)
        config = write_files(tmp_path / "config", ("down.yaml", trace_config(down.url, rooms)))
        # 8 workers: a share of 4, fewer than the rooms, so the bound below means something.
        proc = start(config, tmp_path / "state", "--workers", "8", env=token_env(rooms))
        try:
            assert proc.post_events([event("shop")]).status_code == 202
            wait_for(lambda: proc.status()["outbox_depth"] == 10, timeout=20, what="queued")
            wait_for(lambda: len(down.attempts) >= 1, timeout=20, what="a first attempt")
            # Before the rest, each of the ten rooms was tried at once, and again
            # as each retry fell due; now the first 503 rests the server for
            # all of them. At most one worker share was in flight when it came.
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                assert len(down.attempts) <= 4, [a.room for a in down.attempts]
                time.sleep(0.05)
            down.clear_faults()
        finally:
            assert terminate(proc) == 0, proc.log[-3000:]


def second_name() -> str:
    """Another name of this machine: its host name where that is a loopback name."""
    name = socket.gethostname()
    try:
        addresses = {str(a[4][0]) for a in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        return "127.1"
    return name if addresses and all(a.startswith("127.") for a in addresses) else "127.1"


def test_every_way_of_writing_one_server_shares_its_one_share(tmp_path: Path) -> None:
    """Four integrations each write the slow server another way; had each spelling
    its own share, they would hold every worker and the other server would wait."""
    slow = HipChatServer(SLOW, limits=None).start()
    try:
        port = slow.url.rsplit(":", 1)[1]
        spellings = (
            f"http://127.0.0.1:{port}",
            f"http://localhost:{port}",
            f"http://127.0.0.1:0{port}",
            f"http://{second_name()}:{port}",
        )
        files = [
            (
                f"slow{n}.yaml",
                trace_config(url, SLOW, uid=f"slow-{n}").replace("every error", f"spelling {n}"),
            )
            for n, url in enumerate(spellings)
        ]
        with HipChatServer(GOOD, limits=None) as good:
            slow.inject(Fault.trickle(0.5), times=100)
            legit = trace_config(good.url, GOOD, uid="good-trace")
            files.append(("good.yaml", legit.replace("project: shop", "project: other")))
            config = write_files(tmp_path / "config", *files)
            env = token_env({**SLOW, **GOOD})
            proc = start(
                config, tmp_path / "state", "--workers", "4", "--send-timeout", "600", env=env
            )
            try:
                assert proc.post_events([event("shop")]).status_code == 202
                wait_for(lambda: len(slow.attempts) == 2, timeout=20, what="the share taken")
                posted = time.monotonic()
                assert proc.post_events([event("other")]).status_code == 202
                wait_for(
                    lambda: len(good.messages) == 1,
                    timeout=20,
                    what="the other server's notification, with the slow one holding its share",
                )
                assert time.monotonic() - posted < 5.0
                assert len(slow.attempts) == 2  # no spelling got past the share
            finally:
                slow.close()
                assert terminate(proc) == 0, proc.log[-3000:]
    finally:
        slow.close()
