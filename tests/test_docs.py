"""Docs that cannot drift: the CLI reference is generated from --help, and every command
has help text and an example."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click
import pytest

from sqlsnap.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    expected = _generator().render()
    actual = (ROOT / "docs" / "cli.md").read_text()
    assert actual == expected, "docs/cli.md is stale: run .venv/bin/python scripts/gen_cli_docs.py"


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_and_an_example(name: str) -> None:
    command = main.commands[name]
    assert isinstance(command, click.Command)
    assert command.help and len(command.help.strip()) > 20, f"sqlsnap {name} has no help text"
    assert f"sqlsnap {name}" in command.help, f"sqlsnap {name} --help shows no example"
    examples = command.help.partition("Examples:")[2].splitlines()
    assert any(line.strip().startswith(f"sqlsnap {name}") for line in examples), \
        f"sqlsnap {name} --help has no 'Examples:' block that runs sqlsnap {name}"


def test_the_group_has_help_and_a_first_command() -> None:
    assert main.help and "sqlsnap demo" in main.help


def test_every_option_has_help() -> None:
    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"sqlsnap {name} {param.opts[0]} has no help text"


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in main.commands:
        assert f"sqlsnap {name}" in readme or f"sqlsnap {name}" in (ROOT / "docs" / "cli.md").read_text()
    assert "bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
