"""What may import what: the rules ARCHITECTURE.md draws, checked on the source.

Each part of ``syncd/`` may import only the parts listed for it below, so the
config flow and the event flow meet in the registry and nowhere else, and no
arrow runs from a lower part to a higher one. The checker reads imports with
``ast`` (function-level imports included) and is itself tested on a planted
forbidden import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support.paths import ROOT

# Part -> the other parts it may import. A part is a sub-package or a top-level module.
MAY_IMPORT: Mapping[str, frozenset[str]] = {
    "errors": frozenset(),
    "schemacheck": frozenset(),
    "store": frozenset(),
    "testing": frozenset(),
    "config": frozenset({"errors", "schemacheck"}),
    "registry": frozenset({"config"}),
    "reconcile": frozenset({"config", "registry", "errors"}),
    "events": frozenset({"config", "schemacheck", "store", "registry"}),
    "hipchat": frozenset({"config", "__init__"}),
    "delivery": frozenset({"config", "store", "registry", "events", "hipchat"}),
    "service": frozenset(
        {
            "config",
            "errors",
            "store",
            "registry",
            "reconcile",
            "events",
            "hipchat",
            "delivery",
            "__init__",
        }
    ),
    "commands": frozenset(
        {"config", "errors", "events", "hipchat", "service", "testing", "__init__"}
    ),
    "cli": frozenset({"commands", "config", "errors", "service", "__init__"}),
    "__main__": frozenset({"cli"}),
    "__init__": frozenset(),
}

# Modules of the standard library or of dependencies that one part alone may use.
OWNED: Mapping[str, str] = {
    "sqlite3": "store",
    "psycopg": "store",
    "psycopg_pool": "store",
    "waitress": "service",
    "watchdog": "reconcile",
    "jsonschema_rs": "schemacheck",
}


def sources(root: Path = ROOT / "syncd") -> dict[str, str]:
    """Module name -> source text, for every module of the package."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        found[".".join(parts)] = path.read_text(encoding="utf-8")
    return found


def imported(module: str, text: str) -> Iterator[str]:
    """Every module name ``text`` imports, at any depth of the code."""
    package = module if module.endswith("__init__") else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.removesuffix(".__init__").split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def part_of(module: str) -> str:
    """``syncd.config.loader`` -> ``config``; ``syncd.cli`` -> ``cli``; ``syncd`` and
    the names it holds (``syncd.__version__``) -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else "__init__"


def forbidden_imports(modules: Mapping[str, str]) -> list[str]:
    problems = []
    for module, text in modules.items():
        part = part_of(module)
        allowed = MAY_IMPORT[part] | {part}
        for name in imported(module, text):
            top = name.split(".")[0]
            if top == "syncd":
                target = part_of(name)
                if target not in allowed:
                    problems.append(f"{module} imports {name} ({part} may not import {target})")
            elif top in OWNED and OWNED[top] != part:
                problems.append(f"{module} imports {top}, which only {OWNED[top]}/ may use")
    return problems


def test_every_part_imports_only_what_it_may() -> None:
    modules = sources()
    assert {part_of(m) for m in modules} <= set(MAY_IMPORT), "a new part needs its rule"
    assert forbidden_imports(modules) == []


def test_a_planted_forbidden_import_is_found() -> None:
    modules = sources()
    modules["syncd.config.planted"] = "def f():\n    from syncd.service import daemon\n"
    modules["syncd.hipchat.planted"] = "from ..delivery import dispatch\nimport sqlite3\n"
    assert forbidden_imports(modules) == [
        "syncd.config.planted imports syncd.service (config may not import service)",
        "syncd.config.planted imports syncd.service.daemon (config may not import service)",
        "syncd.hipchat.planted imports syncd.delivery (hipchat may not import delivery)",
        "syncd.hipchat.planted imports syncd.delivery.dispatch (hipchat may not import delivery)",
        "syncd.hipchat.planted imports sqlite3, which only store/ may use",
    ]


def closure(start: str, modules: Mapping[str, str]) -> set[str]:
    """Every module importing ``start`` loads, package ``__init__`` files included."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        dotted = module.removesuffix(".__init__").split(".")
        parents = [".".join(dotted[:n]) + ".__init__" for n in range(1, len(dotted))]
        names = [*imported(module, modules[module]), *parents]
        todo += [n for n in names if n in modules and n not in seen]
        seen |= {n.split(".")[0] for n in names if not n.startswith("syncd")}
    return seen


def test_checking_an_event_reads_no_yaml() -> None:
    loaded = closure("syncd.events.validation", sources())
    assert "yaml" not in loaded
    config = {m for m in loaded if m.startswith("syncd.config.")}
    assert config == {"syncd.config.__init__", "syncd.config.diagnostics"}
