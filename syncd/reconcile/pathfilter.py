"""Which changed paths can change the config set: the watcher's first step.

Editors, desktops and git write far more files next to the config than the
config set holds, and each write is an event. The watcher asks a
:class:`PathFilter` about every changed path and counts only what it accepts,
so noise never wakes the loader. :func:`is_relevant` is the default; it mirrors
what ``configset.discover`` reads, and a caller with other needs passes its own
callable to ``ConfigWatcher(path_filter=...)``.
"""

from __future__ import annotations

import os
from pathlib import PurePath
from typing import Protocol

from syncd.config.configset import is_yaml_name

__all__ = ["PathFilter", "is_editor_noise", "is_relevant"]

_NOISE_PREFIXES = (".#", ".goutputstream-")
_NOISE_SUFFIXES = ("~", ".swp", ".swx", ".swo", "___jb_tmp___", "___jb_old___")
_VIM_PROBE = "4913"  # vim's "may I create files here" probe
# The kubelet's atomic writer swaps this symlink to publish a new ConfigMap revision.
K8S_DATA_LINK = "..data"


class PathFilter(Protocol):
    """Whether a change at ``path`` (relative to the watched dir; the dir itself is
    ``"."``) can change the config set."""

    def __call__(self, path: str, *, is_directory: bool) -> bool: ...


def is_editor_noise(name: str) -> bool:
    """Temp, swap, backup and lock files that editors and desktops write next to a file."""
    return name == _VIM_PROBE or name.startswith(_NOISE_PREFIXES) or name.endswith(_NOISE_SUFFIXES)


def is_relevant(path: str, *, is_directory: bool = False) -> bool:
    """The default :class:`PathFilter`: YAML files outside hidden directories.

    A deleted or moved directory may take YAML files with it, so it counts.
    """
    parts = PurePath(path).parts
    if not parts:
        return is_directory
    if _outside_or_hidden(parts[:-1]):
        return False
    name = parts[-1]
    if name == K8S_DATA_LINK:
        return True
    if name.startswith(".") or is_editor_noise(name):
        return False
    return is_directory or is_yaml_name(name)


def _outside_or_hidden(directories: tuple[str, ...]) -> bool:
    """Above the watched dir, or inside a hidden directory (``.git``, ``..2024_01_01...``)."""
    if directories and directories[0] == os.pardir:
        return True
    return any(part.startswith(".") for part in directories)
