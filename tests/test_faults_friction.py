"""Friction a careful user hits: what the export says, and when it says it."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

import sqlsnap
from sqlsnap.errors import NotFoundError
from tests.conftest import SQLSNAP, execute_script
from tests.test_faults_output import _sqlite

#: An age recipient (a public key; its identity was thrown away).
PUBLIC_KEY = "age162wk777unflxz08gxe0l0qsjq3std4hem7cqs7xm9cceyfvzj5vqv4kzf4"


def _db(tmp_path: Path) -> str:
    return _sqlite(tmp_path, "one.db")  # one table t of one row


def test_one_row_is_not_one_rows(tmp_path: Path) -> None:
    db = _db(tmp_path)
    proc = subprocess.run([SQLSNAP, "export", db, "-o", str(tmp_path / "x.json")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "exporting 1 table\n" in proc.stderr and "  t: 1 row, " in proc.stderr
    assert "exported 1 table, 1 row, " in proc.stderr and "1 rows" not in proc.stderr
    proc = subprocess.run([SQLSNAP, "verify", str(tmp_path / "x.json")], capture_output=True, text=True,
                          timeout=60)
    assert ": 1 table, 1 row, matching" in proc.stdout, proc.stdout


def test_export_prints_a_pattern_that_matches_nothing(tmp_path: Path) -> None:
    db = _db(tmp_path)
    args = [SQLSNAP, "export", db, "--exclude-tables", "nosuch*", "-o", str(tmp_path / "x.json")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Note: --exclude-tables 'nosuch*' matches no table" in proc.stderr, proc.stderr
    proc = subprocess.run([SQLSNAP, "export", db, "-q", "--exclude-tables", "nosuch*", "-o",
                           str(tmp_path / "y.json")], capture_output=True, text=True, timeout=60)
    assert proc.stderr == ""


@pytest.mark.postgresql
def test_tables_only_in_another_schema_are_named(pg_url: str, tmp_path: Path) -> None:
    """Before: "exported 0 tables", exit 0."""
    execute_script(pg_url, ["CREATE SCHEMA app", "CREATE TABLE app.a (id int)", "CREATE TABLE app.b (id int)",
                            "CREATE SCHEMA audit", "CREATE TABLE audit.log (id int)"])
    with pytest.raises(NotFoundError, match=r"tables are in schema app \(2 tables\), audit \(1 table\): "
                                            r"give --schema app"):
        sqlsnap.export(pg_url, str(tmp_path / "x.json"))
    assert sqlsnap.export(pg_url, str(tmp_path / "y.json"), schemas=["app"]).tables["a"].rows == 0
    assert list(tmp_path.iterdir()) != []


@pytest.mark.parametrize("args,fragment", [
    (["-o", "{tmp}/x.json.gz", "--compress", "zstd"], "ends in .gz but --compress zstd"),
    (["-o", "{tmp}/x.json.zst", "--compress", "none"], "ends in .zst but --compress none"),
    (["--format", "jsonl", "-o", "{tmp}/x.json"], "--format jsonl writes a folder"),
    # Encrypted, named as if not (was: an age file named .json.zst); refused, not renamed.
    (["-o", "{tmp}/x.json.zst", "--encrypt-to", PUBLIC_KEY], "does not end in .age; name it x.json.zst.age"),
    (["-o", "{tmp}/x.json", "--encrypt-to", PUBLIC_KEY], "does not end in .age; name it x.json.age"),
])
def test_suffix_and_content_must_agree(tmp_path: Path, args: list[str], fragment: str) -> None:
    """Before: written silently (a zstd file named .gz, a folder named x.json)."""
    db = _db(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([SQLSNAP, "export", db, *[a.format(tmp=out) for a in args]], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert list(out.iterdir()) == []


def test_signals_wait_while_the_commit_runs() -> None:
    """The commit point (a write and a rename) runs with Ctrl-C held: the interrupt is seen
    only once the snapshot is whole (then the export ends as a success), never half-way."""
    import os
    import signal

    from sqlsnap.exporter.job import _signals_held

    with _signals_held() as got:
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt here without the hold
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # bytecodes run: a pending handler would fire among them
            pass
    assert got == [signal.SIGINT, signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_include_secret_hints_the_form_it_accepts(tmp_path: Path) -> None:
    """Before: "'password' is not TABLE.COLUMN; write e.g. 'users.email' or '*.password'", and
    '*.password' was then refused as a pattern."""
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, password TEXT)")
    conn.commit()
    conn.close()
    db = f"sqlite:///{tmp_path / 's.db'}"
    proc = subprocess.run([SQLSNAP, "plan", db, "--include-secret", "password"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "*." not in proc.stderr, proc.stderr
    hinted = re.search(r"write e\.g\. '([^']+)'", proc.stderr)
    assert hinted is not None, proc.stderr
    proc = subprocess.run([SQLSNAP, "plan", db, "--include-secret", hinted.group(1), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    users = json.loads(proc.stdout)["tables"][0]
    assert [c["name"] for c in users["columns"]] == ["id", "password"], users  # included, as hinted
