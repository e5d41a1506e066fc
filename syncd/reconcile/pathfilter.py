"""Which changed paths can change the config set: the watcher's first step.

Editors, desktops and git write far more files next to the config than the
config set holds, and each write is an event. The watcher asks a
:class:`PathFilter` about every changed path and counts only what it accepts,
so noise never wakes the loader. :func:`relevant_to` makes the filter from the
very rule discovery reads by (``ConfigFiles``, ``--exclude`` included), and
:func:`is_relevant` is that filter with no exclusions; a caller with other
needs passes its own callable to ``ConfigWatcher(path_filter=...)``.
"""

from __future__ import annotations

import os
from pathlib import PurePath
from typing import Protocol

from syncd.config.discovery import EVERY_CONFIG_FILE, ConfigFiles

__all__ = ["PathFilter", "is_editor_noise", "is_relevant", "relevant_to"]

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


def relevant_to(files: ConfigFiles) -> PathFilter:
    """The :class:`PathFilter` for a directory whose config files are ``files``.

    A deleted or moved directory may take config files with it, so a directory
    counts unless discovery would not enter it; so does the kubelet's data link.
    """

    def relevant(path: str, *, is_directory: bool = False) -> bool:
        relative = PurePath(path)
        parts = relative.parts
        if not parts:
            return is_directory
        if parts[0] == os.pardir:
            return False
        if parts[-1] == K8S_DATA_LINK and all(files.enters(p) for p in parts[:-1]):
            return True
        if is_editor_noise(parts[-1]):
            return False
        if is_directory:
            return all(files.enters(part) for part in parts)
        return files.holds(relative)

    return relevant


is_relevant = relevant_to(EVERY_CONFIG_FILE)
