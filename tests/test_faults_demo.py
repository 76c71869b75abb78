"""``sqlsnap demo --target`` never replaces a user's table: a database that is neither empty
nor an earlier demo is refused before anything is dropped, unless --replace."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner

from sqlsnap.cli import main


def _db(path: Path, *statements: str) -> str:
    conn = sqlite3.connect(path)
    for s in statements:
        conn.execute(s)
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def test_demo_refuses_a_target_holding_a_table_of_the_same_name(tmp_path: Path) -> None:
    target = _db(tmp_path / "mine.db", "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
                 "INSERT INTO users VALUES (1, 'mine, not the demo''s')")
    result = CliRunner().invoke(main, ["demo", "--target", target, "--no-export", "-q"])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "users" in result.stderr and "--replace" in result.stderr
    conn = sqlite3.connect(tmp_path / "mine.db")
    assert conn.execute("SELECT * FROM users").fetchall() == [(1, "mine, not the demo's")]
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["users"]
    conn.close()


def test_demo_rebuilds_an_earlier_demo_and_replace_builds_beside_other_tables(tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'demo.db'}"
    for _ in range(2):  # the second run finds exactly the demo's tables: rebuilt
        result = CliRunner().invoke(main, ["demo", "--target", target, "--no-export", "-q"])
        assert result.exit_code == 0, result.stderr
    other = _db(tmp_path / "other.db", "CREATE TABLE keep_me (id INTEGER)", "INSERT INTO keep_me VALUES (7)")
    assert CliRunner().invoke(main, ["demo", "--target", other, "--no-export", "-q"]).exit_code == 2
    result = CliRunner().invoke(main, ["demo", "--target", other, "--no-export", "-q", "--replace"])
    assert result.exit_code == 0, result.stderr
    conn = sqlite3.connect(tmp_path / "other.db")
    assert conn.execute("SELECT * FROM keep_me").fetchall() == [(7,)]
    assert conn.execute("SELECT count(*) FROM users").fetchone()[0] > 0
    conn.close()
