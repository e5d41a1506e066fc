"""examples/integrations.yaml, every field set, made to run here.

API, command and end-to-end tests run on it as well as on minimal files: a
field that only the example sets (actions, a card, a trigger with both
frequency and threshold) once broke ``GET /v1/registry`` while every test on a
minimal file passed. The file is copied as written, comments and all; only its
endpoints are pointed at a test server and its secrets made resolvable, each
token reference keeping its kind (env, file, credential).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from syncd.config.reach import Reach
from tests.support.daemons import TEST_REACH
from tests.support.paths import ROOT

EXAMPLE = ROOT / "examples" / "integrations.yaml"
_ENDPOINT = re.compile(r"^(\s*endpoint:\s*)\S+$", re.M)
_SECRETS = "/run/secrets/"


@dataclass(frozen=True)
class Example:
    config_dir: Path
    secrets_dir: Path
    env: dict[str, str]  # the env tokens and CREDENTIALS_DIRECTORY
    rooms: dict[str, str]  # room id -> its token, for a HipChat test server
    uids: tuple[str, ...]  # its integrations, in the file's order

    @property
    def reach(self) -> Reach:
        """Its secrets, and the test server's loopback http endpoint."""
        return replace(TEST_REACH, secrets_dirs=(self.secrets_dir,))

    @property
    def flags(self) -> tuple[str, ...]:
        return ("--secrets-dir", str(self.secrets_dir), "--allow-http-endpoint")


def example(tmp_path: Path, endpoint: str = "http://127.0.0.1:9") -> Example:
    """The example in ``tmp_path/example``, its endpoints all ``endpoint``."""
    text = EXAMPLE.read_text(encoding="utf-8")
    secrets_dir, credentials = tmp_path / "secrets", tmp_path / "credentials"
    for directory in (secrets_dir, credentials, tmp_path / "example"):
        directory.mkdir(parents=True)
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    rooms: dict[str, str] = {}
    integrations = yaml.safe_load(text)["integrations"]
    for integration in integrations:
        for room in integration["hipchat"]["rooms"]:
            token = rooms.setdefault(str(room["id"]), f"example-token-{len(rooms) + 1:02d}")
            kind, name = next(iter(room["token"].items()))
            if kind == "env":
                env[name] = token
            elif kind == "credential":
                (credentials / name).write_text(token)
            else:
                (secrets_dir / name.removeprefix(_SECRETS)).write_text(token)
    text = _ENDPOINT.sub(lambda m: m.group(1) + endpoint, text)
    text = text.replace(_SECRETS, f"{secrets_dir}/")
    (tmp_path / "example" / "integrations.yaml").write_text(text, encoding="utf-8")
    uids = tuple(integration["uid"] for integration in integrations)
    return Example(tmp_path / "example", secrets_dir, env, rooms, uids)
