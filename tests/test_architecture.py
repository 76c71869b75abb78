"""The layout of src/sqlsnap (docs/architecture.md), checked by reading every module's
imports: no import cycle between modules, the library never imports the CLI, and the
rooms depend on each other one way (source -> plan -> policy -> writer -> codecs -> store).

Every import counts, including those inside functions: a lazy import is still a
dependency, only a later one. Importing ``a.b.c`` depends on ``a.b.c`` and on the packages
``a.b`` and ``a`` above it, whose ``__init__`` runs first."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "sqlsnap"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Python modules, and C extensions (by their source file) so that importing one counts."""
    found = sorted((SRC / PACKAGE).rglob("*.py")) + sorted((SRC / PACKAGE).rglob("*.c"))
    return {module_name(p): p for p in found}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The sqlsnap modules ``name`` imports, each with its parent packages (but not the
    packages ``name`` itself is in)."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    if path.suffix != ".py":
        return set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from . import x" imports the submodule x when there is one.
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for target in targets:
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                found.add(".".join(parts[:i]))
    # A module's own packages are already being imported when it runs: no edge to them.
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    return {m for m in found - own if m in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle() -> None:
    """The check can fail: a made-up cycle is found."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_the_top_package() -> None:
    """``sqlsnap/__init__`` re-exports nearly everything, so a module that imports from it
    (``from . import __version__`` did) depends on every other module."""
    offenders = []
    for name, path in modules().items():
        if name == PACKAGE or path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                depth = name.count(".") + (path.name == "__init__.py")
                top = (node.level == depth and node.module is None) or \
                    (node.level == 0 and node.module == PACKAGE)
                if top and any(f"{PACKAGE}.{a.name}" not in modules() for a in node.names):
                    offenders.append(name)
    assert offenders == []


def test_the_library_never_imports_the_cli() -> None:
    offenders = {name: sorted(m for m in deps if m == "sqlsnap.cli" or m.startswith("sqlsnap.cli."))
                 for name, deps in graph().items()
                 if not (name == "sqlsnap.cli" or name.startswith("sqlsnap.cli."))}
    assert {k: v for k, v in offenders.items() if v} == {}


#: Rooms that must not import others: (room, rooms it must never import). The flow is
#: source -> plan -> policy -> writer -> codecs -> store; the exporter and the CLI sit on
#: top; a backend never reaches up into the exporter or the snapshot reader.
FORBIDDEN = [
    ("sqlsnap.model", ["sqlsnap.sources", "sqlsnap.plan", "sqlsnap.exporter", "sqlsnap.stores"]),
    ("sqlsnap.plan", ["sqlsnap.sources", "sqlsnap.exporter", "sqlsnap.stores", "sqlsnap.writers",
                      "sqlsnap.snapshot"]),
    ("sqlsnap.policy", ["sqlsnap.sources", "sqlsnap.exporter", "sqlsnap.stores", "sqlsnap.writers"]),
    ("sqlsnap.sources", ["sqlsnap.exporter", "sqlsnap.stores", "sqlsnap.writers", "sqlsnap.snapshot",
                         "sqlsnap.policy"]),
    ("sqlsnap.writers", ["sqlsnap.exporter", "sqlsnap.sources", "sqlsnap.snapshot"]),
    ("sqlsnap.codecs", ["sqlsnap.exporter", "sqlsnap.sources", "sqlsnap.stores", "sqlsnap.writers"]),
    ("sqlsnap.stores", ["sqlsnap.exporter", "sqlsnap.sources", "sqlsnap.writers", "sqlsnap.snapshot",
                        "sqlsnap.plan", "sqlsnap.policy"]),
    ("sqlsnap.snapshot", ["sqlsnap.exporter", "sqlsnap.sources", "sqlsnap.writers"]),
    ("sqlsnap.format", ["sqlsnap.exporter", "sqlsnap.sources", "sqlsnap.stores", "sqlsnap.writers"]),
]


@pytest.mark.parametrize("room,forbidden", FORBIDDEN, ids=[r for r, _ in FORBIDDEN])
def test_rooms_depend_one_way(room: str, forbidden: list[str]) -> None:
    edges = graph()
    bad = sorted(f"{name} -> {dep}" for name, deps in edges.items()
                 if name == room or name.startswith(room + ".")
                 for dep in deps for f in forbidden if dep == f or dep.startswith(f + "."))
    assert bad == []
