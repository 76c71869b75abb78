"""Output names and the commit point: what appears under the final name, and when.

- ``{database}`` and the other placeholders expand injectively (percent-escaping), so two
  databases never share a file name;
- an existing snapshot is never replaced without ``--force``;
- the data file and its ``.sha256`` appear together: when the checksum file cannot be
  written, the data file is removed and the message says so truthfully.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import sqlsnap
from sqlsnap.cli import main
from sqlsnap.errors import OutputError
from sqlsnap.stores import database_label, escape_value, expand_placeholders

WHEN = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def _expand(database: str, template: str = "{database}.json") -> str:
    return expand_placeholders(template, database=database, when=WHEN, environment=None)


def test_placeholder_expansion_is_injective() -> None:
    """Before: app.prod and app.staging both became app.json, a/b became b."""
    names = ["app.prod", "app.staging", "app", "a/b", "a_b", "a%2Fb", ".hidden", "", "x\\y", "x:y"]
    expanded = [_expand(n) for n in names]
    assert len(set(expanded)) == len(names), expanded
    assert _expand("app.prod") == "app.prod.json"
    assert _expand("a/b") == "a%2Fb.json"
    assert _expand("a%2Fb") == "a%252Fb.json"
    assert _expand(".hidden") == "%2Ehidden.json"
    for name in expanded:
        assert "/" not in name and not name.startswith(".")


def test_database_label_keeps_dots_except_a_sqlite_suffix() -> None:
    assert database_label("postgresql", "app.prod") == "app.prod"
    assert database_label("mysql", "shop.eu") == "shop.eu"
    assert database_label("sqlite", "/data/app.prod.db") == "app.prod"
    assert escape_value("app.prod") == "app.prod"


def _sqlite(tmp_path: Path, name: str = "app.prod.db") -> str:
    path = tmp_path / name
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def test_existing_snapshot_is_not_replaced_without_force(tmp_path: Path) -> None:
    src = _sqlite(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    sqlsnap.export(src, str(out / "{database}.json"))
    first = (out / "app.prod.json").read_bytes()
    assert (out / "app.prod.json.sha256").exists()
    with pytest.raises(OutputError, match="already exists; give --force"):
        sqlsnap.export(src, str(out / "{database}.json"))
    assert (out / "app.prod.json").read_bytes() == first
    result = CliRunner().invoke(main, ["export", src, "-q", "-o", str(out / "{database}.json")])
    assert result.exit_code == 6
    assert result.stderr.count("\n") == 1 and "--force" in result.stderr
    result = CliRunner().invoke(main, ["export", src, "-q", "--force", "-o", str(out / "{database}.json")])
    assert result.exit_code == 0, result.stderr
    assert sorted(os.listdir(out)) == ["app.prod.json", "app.prod.json.sha256"]


def test_sidecar_that_cannot_be_written_removes_the_data_file(tmp_path: Path) -> None:
    """The name of the checksum file is taken by a folder: before, the data file stayed under
    its final name while the command reported failure."""
    src = _sqlite(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "snap.json.sha256").mkdir()
    result = CliRunner().invoke(main, ["export", src, "-q", "-o", str(out / "snap.json")])
    assert result.exit_code == 6, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert not (out / "snap.json").exists()
    assert sorted(os.listdir(out)) == ["snap.json.sha256"]  # the folder that was in the way
    assert "snap.json.sha256" in result.stderr


def test_sidecar_failing_at_the_commit_removes_the_data_file(tmp_path: Path) -> None:
    """The same, with the checksum file's name taken after the destination was checked (as a
    disk filling up at the last write would): the data file is never renamed into place."""
    src = _sqlite(tmp_path)
    out = tmp_path / "out"
    out.mkdir()

    class TakeTheName:
        def start(self, tables: object) -> None:
            (out / "snap.json.sha256").mkdir()

        def advance(self, *args: object) -> None:
            pass

        def table_done(self, *args: object) -> None:
            pass

        def finish(self) -> None:
            pass

    with pytest.raises(OutputError):
        sqlsnap.export(src, str(out / "snap.json"), progress=TakeTheName())  # type: ignore[arg-type]
    assert sorted(os.listdir(out)) == ["snap.json.sha256"]
