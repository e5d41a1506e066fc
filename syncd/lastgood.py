"""The last-known-good config set, kept in the state dir.

A daemon restarted while its config dir holds a broken change would
otherwise have nothing to run on; it starts on this copy instead and says so.
The copy is replaced whole (write beside, then rename), never half-written.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from syncd import semantics
from syncd.configset import ConfigLoader, ConfigSet

REVISION_FILE = ".revision"  # hidden, so discovery never reads it as config


def save(target: Path, config: ConfigSet, revision: str, config_dir: Path) -> bool:
    """Copy the applied files; False when one changed since it was applied."""
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        for name, digest in zip(config.files, config.file_digests, strict=True):
            data = Path(name).read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                return False  # the next reconcile saves it
            dest = staging / Path(name).relative_to(config_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        (staging / REVISION_FILE).write_text(revision)
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load(target: Path, options: semantics.Options) -> tuple[ConfigSet, str] | None:
    if not target.is_dir():
        return None
    revision_file = target / REVISION_FILE
    revision = revision_file.read_text().strip() if revision_file.exists() else "unknown"
    return ConfigLoader(options).load([target]), revision
