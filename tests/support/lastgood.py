"""The last-known-good copy as files, for tests that look at the copy itself."""

from __future__ import annotations

import os
from pathlib import Path

from syncd.reconcile import lastgood


def saved_files(target: Path) -> dict[str, bytes]:
    """Each saved file's bytes by its path below the config dir, whichever layout
    ``target`` (the state dir's ``last-known-good``) is in; empty without a copy."""
    try:
        store = target.parent / os.readlink(target) if target.is_symlink() else target
    except OSError:
        return {}
    if not store.is_dir():
        return {}
    manifest = store / lastgood.MANIFEST
    if not manifest.exists():
        return {
            p.relative_to(store).as_posix(): p.read_bytes()
            for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != lastgood.REVISION_FILE
        }
    entries = lastgood.Manifest.parse(manifest.read_bytes()).entries(store)
    objects = store / lastgood.OBJECTS
    return {
        path: (objects / lastgood.blob_name(path, digest)).read_bytes()
        for path, digest in entries.items()
    }


def holds(target: Path, *paths: str) -> bool:
    """The copy is there and holds each of ``paths``."""
    try:
        saved = saved_files(target)
    except (OSError, lastgood.DamagedCopy):
        return False  # a save under way moved the manifest on: ask again
    return all(path in saved for path in paths)
