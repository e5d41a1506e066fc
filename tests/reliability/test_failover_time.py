"""How long a room waits when the daemon sending it dies: kill -9 the daemon that
holds the room's lease, and time until another daemon sends the room's next
notification. Real daemons on the machine's PostgreSQL, and the HipChat test
server holding that one send open so the lease is held at the kill.

The daemons run with ``--lease 6 --send-timeout 3``: the room waits the lease
out (6 s, not the default 120 s), and so does this test. The kill comes once
the send has reached HipChat, well within the send timeout of the claim, so
the send is still in flight, its lease held, when the daemon dies; the test
checks that it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from syncd.store.postgresql import application_name
from syncd.testing import Fault, HipChatServer
from tests.support import postgres
from tests.support.configs import room_tokens, token_env, trace_config, write_files
from tests.support.delivery import numbers
from tests.support.events import numbered_events
from tests.support.postgres import postgres_url  # noqa: F401  (a fixture)
from tests.support.processes import FAST_RETRY, Proc, kill9, spawn, terminate, wait_listening
from tests.support.waiting import wait_for

HELD = "6001"  # the room whose send is in flight at the kill
OTHER = "6002"  # a room of another integration, sent by the survivor meanwhile
TOKENS = room_tokens(HELD, OTHER)
LEASE = 6.0
SEND_TIMEOUT = 3.0
LEASE_FLAGS = ("--lease", f"{LEASE:g}", "--send-timeout", f"{SEND_TIMEOUT:g}")
SLACK = 2.0


@pytest.fixture
def hipchat() -> Iterator[HipChatServer]:
    with HipChatServer(TOKENS, limits=None) as server:
        yield server


def _own_id(proc: Proc) -> str | None:
    members = (proc.status().get("cluster") or {}).get("members", [])
    return next((str(m["id"]) for m in members if m.get("self")), None)


def _lease_of(url: str, room: str) -> tuple[str, float] | None:
    """The owner and lease end of the room's item in flight, if one is."""
    rows = postgres.execute(
        url,
        "SELECT owner, lease_until FROM outbox WHERE room_id = %s AND state = 'inflight'",
        (room,),
    )
    return (str(rows[0][0]), float(rows[0][1])) if rows else None


def _holder(procs: list[Proc], owners: list[str], owner: str, url: str) -> Proc:
    """The daemon whose id the lease names; its connections carry the name too."""
    assert owner in owners, (owner, owners)
    (count,) = postgres.execute(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
        (application_name(owner),),
    )[0]
    assert count >= 1, "the lease's owner has no connection"
    return procs[owners.index(owner)]


def _start(procs: list[Proc], config: Path, tmp_path: Path, url: str) -> list[str]:
    """Two daemons on the store (into ``procs``, for the caller to stop whatever
    happens), and the member id (lease owner) of each."""
    args = (*FAST_RETRY, *LEASE_FLAGS, "--store", url, "--workers", "4")
    procs.extend(
        spawn(config, tmp_path / f"state-{n}", *args, env=token_env(TOKENS)) for n in range(2)
    )
    owners: list[str] = []
    for proc in procs:
        wait_listening(proc)
        wait_for(partial(_own_id, proc), timeout=30, what="the daemon's member id")
        owners.append(str(_own_id(proc)))
    return owners


def _other_event() -> list[dict[str, object]]:
    return [{**e, "project": "other"} for e in numbered_events(100, 1)]


@pytest.mark.slow
def test_a_killed_daemons_room_is_sent_by_another_within_the_lease(
    tmp_path: Path,
    hipchat: HipChatServer,
    postgres_url: str,  # noqa: F811
) -> None:
    """The room's first send hangs at the server; the daemon holding its lease is
    killed. The survivor sends another room's event at once, and the held room's
    (the same notification, then the next) once the lease has run out."""
    held = trace_config(hipchat.url, [HELD], uid="held-trace")
    other = trace_config(hipchat.url, [OTHER], uid="other-trace").replace("shop", "other")
    config = write_files(tmp_path / "config", ("held.yaml", held), ("other.yaml", other))
    procs: list[Proc] = []
    try:
        owners = _start(procs, config, tmp_path, postgres_url)
        hipchat.inject(Fault.slow(10 * LEASE), room=HELD)  # the first send hangs
        assert procs[0].post_events(numbered_events(0, 2)).status_code == 202
        wait_for(lambda: _lease_of(postgres_url, HELD), timeout=30, what="the room's lease")
        # Its send has reached HipChat (the claim comes first): killed before, the
        # daemon left the hanging answer to the survivor's send (9.1 s, not 6).
        wait_for(lambda: hipchat.faults_left(HELD) == 0, timeout=30, what="the held send")
        found = _lease_of(postgres_url, HELD)
        assert found is not None
        owner, lease_until = found
        victim = _holder(procs, owners, owner, postgres_url)
        survivor = procs[1 - procs.index(victim)]
        killed = time.time()
        kill9(victim)
        # Still in flight and leased to the victim: it died sending, not after.
        assert _lease_of(postgres_url, HELD) == found, (found, killed)
        answer = survivor.post_events(_other_event())
        assert answer.status_code == 202, answer.text
        hipchat.wait_for_messages(1, room=OTHER, timeout=20)  # the survivor is not stalled
        (first, *_) = hipchat.wait_for_messages(1, room=HELD, timeout=LEASE + 3 * SLACK)
        failover = first.time - killed
        print(
            f"failover: {failover:.2f} s after the kill; the lease had "
            f"{lease_until - killed:.2f} s left (lease {LEASE:g} s)"
        )
        assert failover <= LEASE + SLACK, failover
        assert failover <= lease_until - killed + SLACK, (failover, lease_until - killed)
        hipchat.wait_for_messages(2, room=HELD, timeout=20)
        assert numbers(hipchat, HELD) == [0, 1]
        rows = postgres.execute(
            postgres_url, "SELECT DISTINCT owner FROM outbox WHERE room_id = %s", (HELD,)
        )
        assert {r[0] for r in rows} == {owners[procs.index(survivor)]}
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                terminate(proc)
            print(proc.log[-4000:])  # shown when the test fails
