"""The CLI's shape, pinned: a package of one module per command over the library, one
place for errors, no driver loaded by --help, and a library that never imports the CLI."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from sqlsnap.cli import main

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "sqlsnap"
CLI = PACKAGE / "cli"
#: The CLI modules that are not a command.
SHARED = {"__init__", "__main__", "errors", "options", "output", "service_common"}
COMMANDS = sorted(p.stem for p in CLI.glob("*.py") if p.stem not in SHARED)
#: Library modules the CLI may import when it is imported: small, and loading no driver.
EAGER_LIBRARY_IMPORTS = {"sqlsnap._version", "sqlsnap.errors", "sqlsnap.urls"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool = False) -> list[str]:
    """The absolute names of the modules ``path`` imports (``from x import y``: x and x.y)."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path) if path.stem == "__init__" else _module_name(path).rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def test_the_entry_point_is_sqlsnap_cli_main() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["sqlsnap"] == "sqlsnap.cli:main"
    assert isinstance(main, click.Group)


def test_one_module_per_command() -> None:
    assert COMMANDS == sorted(main.commands)
    for name in COMMANDS:
        module = importlib.import_module(f"sqlsnap.cli.{name}")
        # A group's own subcommands (sqlsnap users add) live beside it.
        subcommands = list(getattr(main.commands[name], "commands", {}).values())
        commands = [v for v in vars(module).values() if isinstance(v, click.Command) and v not in subcommands]
        assert commands == [main.commands[name]], f"sqlsnap/cli/{name}.py must define the {name} command only"


def test_the_library_never_imports_the_cli() -> None:
    for path in PACKAGE.rglob("*.py"):
        if CLI in path.parents:
            continue
        bad = [n for n in _imports(path) if n == "sqlsnap.cli" or n.startswith("sqlsnap.cli.")]
        assert not bad, f"{path.relative_to(ROOT)} imports the CLI ({bad[0]})"


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_the_cli_imports_the_library_when_a_command_runs(path: Path) -> None:
    """At import time only the small modules; the rest inside the command, so --help stays fast."""
    allowed = ("sqlsnap.cli", *EAGER_LIBRARY_IMPORTS)
    eager = [n for n in _imports(path, top_level_only=True) if n.startswith("sqlsnap.")
             and not any(n == m or n.startswith(m + ".") for m in allowed)]
    assert not eager, f"{path.name} imports {eager[0]} when imported: import it inside the command"


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_only_cli_errors_exits_and_writes_error_lines(path: Path) -> None:
    if path.name == "errors.py":
        return
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr == "exit":
            pytest.fail(f"{path.name}:{node.lineno} exits: go through cli/errors.py (run or fail)")
        if isinstance(node, ast.Name) and node.id == "SystemExit":
            pytest.fail(f"{path.name}:{node.lineno} raises SystemExit: go through cli/errors.py")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("Error:"):
            pytest.fail(f"{path.name}:{node.lineno} writes an Error: line: raise a SnapError instead")


def test_help_loads_no_driver() -> None:
    code = ("import sys\nfrom sqlsnap.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(' '.join(sorted(sys.modules)), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stderr.split())
    for heavy in ("psycopg", "pymysql", "MySQLdb", "boto3", "botocore", "pyrage", "rich"):
        assert heavy not in loaded, f"sqlsnap --help imports {heavy}"
