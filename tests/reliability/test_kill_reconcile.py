"""kill -9 of ``syncd run`` while it reconciles a large config set that keeps changing.

Three hundred files (some holding two integrations) are rewritten round after
round: files deleted, added, edited, integrations moved from one file to
another. Each round kills the daemon at a random moment: half-way through the
writes, as soon as the change was applied, or after a random number of answered
health checks (somewhere in the debounce window or the reconcile itself). Events
are posted every round, so the outbox has pending items of integrations that
later go away.

Afterwards: the registry holds exactly the final config's uids, the
last-known-good copy is always a complete valid set, the outbox passes SQLite's
integrity check, and no undelivered item of a removed integration is left; with
a broken config the daemon starts on the last-known-good set, which is the final
valid one.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

from syncd.config import semantics
from syncd.reconcile import lastgood
from tests.support.daemons import TEST_REACH
from tests.support.delivery import integrity, outbox_rows
from tests.support.processes import Proc, kill9, spawn, start, terminate
from tests.support.waiting import wait_for

SEED = 4242
FILES = 300
ROUNDS = 6
ENV = {"HIPCHAT_RELIABILITY_TOKEN": "reconcile-token"}


def integration_yaml(uid: str, name: str) -> str:
    return f"""\
  - uid: {uid}
    project: p-{uid}
    name: {name}
    state: stopped
    hipchat:
      endpoint: http://127.0.0.1:9
      rooms:
        - {{id: 1, token: {{env: HIPCHAT_RELIABILITY_TOKEN}}}}
"""


@dataclass
class Generation:
    """file name -> [(uid, name)]."""

    files: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def uids(self) -> set[str]:
        return {uid for entries in self.files.values() for uid, _ in entries}

    def text(self, name: str) -> str:
        body = "".join(integration_yaml(uid, n) for uid, n in self.files[name])
        return "version: 1\nintegrations:\n" + body


class World:
    def __init__(self, config: Path, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.counter = 0
        self.file_counter = 0
        self.current = Generation()

    def new_uid(self) -> str:
        self.counter += 1
        return f"int-{self.counter:05d}"

    def new_file(self) -> str:
        self.file_counter += 1
        return f"f{self.file_counter:05d}.yaml"

    def initial(self) -> Generation:
        gen = Generation()
        for _ in range(FILES):
            entries = [(self.new_uid(), "first")]
            if self.rng.random() < 0.2:
                entries.append((self.new_uid(), "first"))
            gen.files[self.new_file()] = entries
        return gen

    def next(self, round_no: int) -> Generation:
        rng = self.rng
        files = {name: list(entries) for name, entries in self.current.files.items()}
        names = sorted(files)
        for name in rng.sample(names, len(names) // 7):
            del files[name]
        for name in rng.sample(sorted(files), len(files) // 7):
            files[name] = [(uid, f"edited in round {round_no}") for uid, _ in files[name]]
        for _ in range(5):
            source, dest = rng.sample(sorted(files), 2)
            if len(files[source]) > 1:
                files[dest] = files[dest] + [files[source].pop()]
        for _ in range(FILES // 7):
            files[self.new_file()] = [(self.new_uid(), f"added in round {round_no}")]
        return Generation(files)

    def operations(self, gen: Generation) -> list[tuple[str, str | None]]:
        """(file, text or None to delete) turning the current set into ``gen``."""
        ops: list[tuple[str, str | None]] = [
            (name, None) for name in self.current.files if name not in gen.files
        ]
        for name, entries in gen.files.items():
            if self.current.files.get(name) != entries:
                ops.append((name, gen.text(name)))
        self.rng.shuffle(ops)
        # A file that gains a uid (an integration moved to it) goes first: meanwhile
        # the uid is declared twice, which is rejected, instead of missing, which
        # would remove the integration and cancel its queued notifications.
        gains = {
            name
            for name, entries in gen.files.items()
            if {u for u, _ in entries} - {u for u, _ in self.current.files.get(name, [])}
            and name in self.current.files
        }
        ops.sort(key=lambda op: op[0] not in gains)
        return ops

    def write(self, op: tuple[str, str | None]) -> None:
        name, text = op
        path = self.config / name
        if text is None:
            path.unlink()
        elif self.rng.random() < 0.5:
            path.write_text(text)  # in place: the daemon may read it half-written
        else:
            temp = self.config / f".{name}.tmp"
            temp.write_text(text)
            temp.replace(path)


def registry_uids(proc: Proc) -> set[str]:
    data = requests.get(proc.url + "/v1/registry", timeout=10).json()
    return {i["uid"] for i in data["integrations"]}


def applied_count(proc: Proc) -> int:
    return sum(1 for line in list(proc.lines) if " applied " in line)


def check_last_known_good(state: Path) -> set[str] | None:
    saved = lastgood.load(state / "last-known-good", semantics.Options(reach=TEST_REACH))
    if saved is None:
        return None
    config, revision = saved
    assert config.valid, config.diagnostics
    assert revision != "unknown", "the last-known-good copy lacks its revision file"
    return {i.uid for i in config.integrations}


def post_events(proc: Proc, uids: set[str], rng: random.Random, posted: Counter[str]) -> None:
    chosen = rng.sample(sorted(uids), 10)
    events = [
        {
            "project": f"p-{uid}",
            "fingerprint": f"fp-{rng.random()}",
            "timestamp": "2026-11-26T12:00:00Z",
        }
        for uid in chosen
    ]
    answer = proc.post_events(events)
    assert answer.status_code == 202, answer.text
    assert answer.json()["notifications"] == len(chosen)
    posted.update(chosen)


def test_kill_9_during_reconciles_keeps_registry_and_outbox_right(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    config = tmp_path / "config"
    config.mkdir()
    state = tmp_path / "state"
    db = state / "outbox.db"
    world = World(config, rng)
    first = world.initial()
    for op in world.operations(first):
        world.write(op)
    world.current = first
    applied_sets: list[set[str]] = [first.uids]
    posted: Counter[str] = Counter()

    strategies = ["mid-write", "on-apply", "after-polls"]
    for round_no in range(ROUNDS):
        proc = start(config, state, env=ENV)
        try:

            def matches(proc: Proc = proc, uids: set[str] = world.current.uids) -> bool:
                return registry_uids(proc) == uids

            wait_for(
                matches,
                timeout=20,
                what=f"round {round_no}: the registry to match the config",
            )
            post_events(proc, world.current.uids, rng, posted)
            gen = world.next(round_no)
            ops = world.operations(gen)
            strategy = strategies[round_no % len(strategies)]
            if strategy == "mid-write":
                cut = rng.randint(0, len(ops))
                for op in ops[:cut]:
                    world.write(op)
                kill9(proc)
                for op in ops[cut:]:
                    world.write(op)
            elif strategy == "on-apply":
                before = applied_count(proc)
                for op in ops:
                    world.write(op)

                def applied(proc: Proc = proc, before: int = before) -> bool:
                    return applied_count(proc) > before or proc.popen.poll() is not None

                wait_for(
                    applied,
                    timeout=20,
                    what="the change to be applied",
                )
                kill9(proc)
            else:
                for op in ops:
                    world.write(op)
                polls = rng.randint(0, 150)
                for _ in range(polls):
                    assert requests.get(proc.url + "/healthz", timeout=5).status_code == 200
                kill9(proc)
            world.current = gen
            applied_sets.append(gen.uids)
        finally:
            kill9(proc)
        assert proc.popen.returncode == -9, proc.log
        assert integrity(db) == "ok", f"round {round_no}"
        check_last_known_good(state)

    final = world.current
    proc = start(config, state, env=ENV)
    try:
        wait_for(
            lambda: registry_uids(proc) == final.uids,
            timeout=20,
            what="the registry to hold exactly the final uids",
        )
        status = proc.status()
        assert status["last_reconcile"]["ok"], status
        wait_for(
            lambda: check_last_known_good(state) == final.uids,
            timeout=20,
            what="the last-known-good copy to be the final set",
        )

        # Nothing queued for a surviving integration was lost or cancelled; what
        # was queued for a removed one was never sent (it is cancelled, or still
        # pending until the dispatcher sees that its integration is gone).
        rows = outbox_rows(db)
        for uid in final.uids:
            mine = [row[3] for row in rows if row[1] == uid]
            assert len(mine) == posted[uid], (uid, mine, posted[uid])
            assert set(mine) <= {"pending", "inflight"}, (uid, mine)
        removed = {u for s in applied_sets for u in s} - final.uids
        for _, uid, _, item_state, _ in rows:
            if uid in removed:
                assert item_state in ("cancelled", "pending", "inflight"), (uid, item_state)
        assert {row[1] for row in rows} <= final.uids | removed
        # A broken change now: a restart must come up on the last-known-good set.
        (config / "zz-broken.yaml").write_text("version: 1\nintegrations:\n  - uid: [\n")
        wait_for(
            lambda: proc.status()["last_reconcile"]["ok"] is False,
            timeout=20,
            what="the broken change to be rejected",
        )
        assert registry_uids(proc) == final.uids
    finally:
        kill9(proc)
    assert integrity(db) == "ok"

    proc = start(config, state, env=ENV)
    try:
        assert registry_uids(proc) == final.uids
        assert "last-known-good" in proc.log, proc.log
    finally:
        assert terminate(proc) == 0, proc.log
    assert integrity(db) == "ok"


def ready(proc: Proc) -> bool:
    """True once the daemon answers /readyz with 200; False while it is not up (or gone)."""
    match = re.search(r"listening on (http://\S+),", proc.log)
    if match is None:
        return False
    try:
        return requests.get(match.group(1) + "/readyz", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def start_and_wait_ready(config: Path, state: Path) -> Proc:
    proc = spawn(config, state, env=ENV)
    wait_for(
        lambda: proc.popen.poll() is not None or ready(proc),
        timeout=20,
        what="the daemon to be ready or to give up",
    )
    assert proc.popen.poll() is None, proc.log
    proc.url = re.findall(r"listening on (http://\S+),", proc.log)[-1]
    return proc


def first_set(config: Path) -> World:
    world = World(config, random.Random(SEED))
    first = world.initial()
    for op in world.operations(first):
        world.write(op)
    world.current = first
    return world


def add_one(world: World) -> None:
    gen = Generation({**world.current.files, world.new_file(): [(world.new_uid(), "added")]})
    for op in world.operations(gen):
        world.write(op)
    world.current = gen


BROKEN = "version: 1\nintegrations:\n  - uid: [\n"


def test_a_crash_in_the_middle_of_saving_the_last_known_good_copy_leaves_the_old_one(
    tmp_path: Path,
) -> None:
    """What a kill -9 inside a save of the older layout (a directory of copies per
    set) left: a half-filled new copy, and a link to it not yet renamed over
    ``last-known-good``. A start on a broken config uses the saved set; the next
    save clears the debris. (Kills inside today's save: test_kill_lastgood.)"""
    config = tmp_path / "config"
    config.mkdir()
    state = tmp_path / "state"
    world = first_set(config)
    saved = world.current.uids
    proc = start(config, state, env=ENV)
    try:
        wait_for(lambda: check_last_known_good(state) == saved, timeout=20, what="the copy")
    finally:
        assert terminate(proc) == 0, proc.log
    lkg = state / "last-known-good"
    half = state / "last-known-good.99999999999999999999"
    half.mkdir()
    for name in sorted(world.current.files)[:10]:
        (half / name).write_text(world.current.text(name)[:40])
    (state / "last-known-good.link").symlink_to(half.name)
    (config / "zz-broken.yaml").write_text(BROKEN)

    proc = start_and_wait_ready(config, state)
    try:
        assert registry_uids(proc) == saved
        assert "last-known-good" in proc.log, proc.log
        (config / "zz-broken.yaml").unlink()
        add_one(world)
        wait_for(
            lambda: check_last_known_good(state) == world.current.uids,
            timeout=20,
            what="the new set saved over the debris",
        )
        left = sorted(p.name for p in state.iterdir() if p.name.startswith("last-known-good"))
        assert len(left) == 2 and lkg.is_symlink(), left
    finally:
        assert terminate(proc) == 0, proc.log
