"""A set of integration files: discovery, loading, validation and the model.

Both ``syncd validate`` and the daemon go through :func:`load_config_set`, so
the pre-commit hook and the server can never disagree on what is valid.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from syncd import schema, semantics
from syncd.diagnostics import Diagnostic, count_errors
from syncd.loader import LoadedFile, load_file
from syncd.model import Integration, Source, integration_from_data

YAML_SUFFIXES = (".yaml", ".yml")


class PathNotFoundError(Exception):
    """A path given on the command line does not exist."""


def discover(paths: Iterable[Path]) -> list[Path]:
    """YAML files under ``paths``, sorted, skipping hidden directories (``.git``,
    and the ``..data``-style directories of mounted volumes, whose files would
    otherwise be read twice)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path, followlinks=True):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(
                    Path(root) / f
                    for f in sorted(files)
                    if f.endswith(YAML_SUFFIXES) and not f.startswith(".")
                )
        elif path.exists() or path.is_symlink():
            found.append(path)
        else:
            raise PathNotFoundError(f"no such file or directory: {path}")
    unique: dict[Path, None] = dict.fromkeys(found)
    return list(unique)


@dataclass(frozen=True)
class ConfigSet:
    files: tuple[str, ...]
    diagnostics: tuple[Diagnostic, ...]
    integrations: tuple[Integration, ...]

    @property
    def valid(self) -> bool:
        return count_errors(self.diagnostics) == 0


def validate_files(
    loaded_files: Sequence[LoadedFile], options: semantics.Options = semantics.DEFAULT_OPTIONS
) -> ConfigSet:
    diagnostics: list[Diagnostic] = []
    for loaded in loaded_files:
        diagnostics.extend(loaded.diagnostics)
        if loaded.ok:
            diagnostics.extend(schema.schema_diagnostics(loaded))
    diagnostics.extend(semantics.check(loaded_files, options))
    diagnostics.sort()
    integrations: list[Integration] = []
    if count_errors(diagnostics) == 0:
        for loaded in loaded_files:
            for index, item in enumerate(loaded.data["integrations"]):
                line, col = loaded.position(("integrations", index))
                integrations.append(integration_from_data(item, Source(loaded.path, line, col)))
    return ConfigSet(
        files=tuple(f.path for f in loaded_files),
        diagnostics=tuple(diagnostics),
        integrations=tuple(integrations),
    )


def load_config_set(
    paths: Iterable[Path], options: semantics.Options = semantics.DEFAULT_OPTIONS
) -> ConfigSet:
    return validate_files([load_file(p) for p in discover(paths)], options)
