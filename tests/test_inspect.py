"""sqlsnap inspect: planted orphans, empty tables and columns, distinct counts exact and
estimated, masked values never shown, and docs/examples/demo-inspect.md kept current.

Regenerate the example after a deliberate change with ``.venv/bin/python -m tests.test_inspect``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

import sqlsnap
from sqlsnap import demo
from sqlsnap.cli.inspect import inspect_cmd
from sqlsnap.inspect import EXACT_DISTINCT, InspectResult, inspect

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "demo-inspect.md"


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A SQLite database with two orphans, a column always null, an empty table and a column of
    30,000 distinct values; exported."""
    db = tmp_path / "planted.db"
    with sqlite3.connect(db) as conn:
        conn.executescript("""
            CREATE TABLE parents (id INTEGER PRIMARY KEY, kind TEXT NOT NULL);
            CREATE TABLE children (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parents (id),
                                   note TEXT, amount NUMERIC(10,2), born DATE);
            CREATE TABLE nobody (id INTEGER PRIMARY KEY);
            CREATE TABLE many (id INTEGER PRIMARY KEY, code TEXT);
        """)
        conn.executemany("INSERT INTO parents VALUES (?, ?)", [(i, "ab"[i % 2]) for i in range(1, 6)])
        rows = [(i, i % 5 + 1, None, f"{i}.50", f"2020-01-{i % 28 + 1:02d}") for i in range(1, 41)]
        rows += [(41, 99, None, "-3.25", "1999-12-31"), (42, 98, None, None, None),
                 (43, None, None, None, None)]
        conn.executemany("INSERT INTO children VALUES (?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO many VALUES (?, ?)", [(i, f"code-{i}") for i in range(30_000)])
    out = tmp_path / "planted.json"
    sqlsnap.export(f"sqlite:///{db}", str(out))
    return out


def test_planted_orphans_and_empty_things_are_found(planted: Path) -> None:
    result = inspect(str(planted))
    (orphans,) = result.orphans
    assert (orphans.table, orphans.columns, orphans.ref_table, orphans.count) == \
        ("children", ["parent_id"], "parents", 2)
    assert [(d.line, d.values) for d in orphans.examples] == [(41, [99]), (42, [98])]
    assert result.empty_tables == ["nobody"]
    assert result.empty_columns == ["children.note"]

    tables = {t.name: t for t in result.tables}
    assert tables["children"].rows == 43 and tables["many"].rows == 30_000
    # The size is the table's JSON Lines bytes: each row line without its comma, with a newline.
    lines = planted.read_text().splitlines()
    assert tables["children"].bytes == sum(len(line.rstrip(",")) + 1 for line in lines
                                           if line.startswith('{"id":') and '"parent_id"' in line)
    columns = {c.name: c for c in tables["children"].columns}
    assert (columns["amount"].min, columns["amount"].max) == (Decimal("-3.25"), Decimal("40.5"))
    assert (columns["born"].min, columns["born"].max) == ("1999-12-31", "2020-01-28")
    assert columns["parent_id"].null_share == pytest.approx(1 / 43)
    kind = {c.name: c for c in tables["parents"].columns}["kind"]
    assert kind.common == [("b", 3), ("a", 2)] and kind.distinct == 2 and kind.distinct_exact

    code = {c.name: c for c in tables["many"].columns}["code"]
    assert not code.distinct_exact and 30_000 > EXACT_DISTINCT
    assert code.distinct == pytest.approx(30_000, rel=0.1)  # KMV with k=1024: ~3 % standard error
    assert code.longest_text == len("code-29999") and code.common == []
    ids = {c.name: c for c in tables["many"].columns}["id"]
    assert (ids.min, ids.max) == (0, 29_999)

    text = result.to_text()
    assert "children(parent_id) -> parents: 2 without parent" in text
    assert "Empty columns: children.note" in text
    markdown = result.to_markdown()
    assert "- children(parent_id) -> parents: 2 rows without a parent (row 41: 99, row 42: 98)" in markdown


def test_a_snapshot_without_problems_says_so(tmp_path: Path) -> None:
    db = tmp_path / "clean.db"
    with sqlite3.connect(db) as conn:
        conn.executescript("CREATE TABLE a (id INTEGER PRIMARY KEY); INSERT INTO a VALUES (1), (2);")
    sqlsnap.export(f"sqlite:///{db}", str(tmp_path / "clean.json"))
    result = inspect(str(tmp_path / "clean.json"))
    assert result.orphans == [] and result.empty_tables == [] and result.empty_columns == []
    assert "Orphans: none" in result.to_text()


def test_masked_values_are_never_shown(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    conn = sqlite3.connect(db)
    demo.build(conn, "sqlite", 1)
    conn.commit()
    conn.close()
    snap = tmp_path / "anon.json"
    sqlsnap.export(f"sqlite:///{db}", str(snap), anonymize=True, hash_key="k" * 32)
    result = inspect(str(snap))
    masked = [(t.name, c) for t in result.tables for c in t.columns if c.masked]
    assert masked, "the PII preset masks some columns"
    markdown, as_json = result.to_markdown(), json.dumps(result.to_dict(), default=str)
    for table, column in masked:
        assert column.common == [] and column.example is None and column.min is None
        assert f"{table}.{column.name}: {column.masked}" in result.left_out()
    email = next(c for t, c in masked if c.name == "email")
    assert "@" not in "".join(line for line in markdown.splitlines() if line.startswith("| email |"))
    assert email.masked and '"masked"' in as_json


def test_the_cli_prints_each_format(planted: Path) -> None:
    runner = CliRunner()
    as_json = runner.invoke(inspect_cmd, [str(planted), "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    assert doc["empty_tables"] == ["nobody"] and doc["orphans"][0]["count"] == 2
    markdown = runner.invoke(inspect_cmd, [str(planted), "--format", "markdown"])
    assert markdown.stdout.startswith("# Data dictionary: ")
    text = runner.invoke(inspect_cmd, [str(planted)])
    assert text.stdout.startswith(f"Snapshot {planted}: 4 tables, 30,048 rows")
    missing = runner.invoke(inspect_cmd, [str(planted.with_name("missing.json"))])
    assert missing.exit_code == 4 and missing.stderr.startswith("Error: ")


# -- the checked-in example -------------------------------------------------------------------------


def demo_markdown(tmp: Path) -> str:
    """The data dictionary of the demo (SQLite, scale 1), with the moment and the file name
    of the export fixed so that it reads the same on every run."""
    db = tmp / "demo.db"
    conn = sqlite3.connect(db)
    demo.build(conn, "sqlite", 1)
    conn.commit()
    conn.close()
    snap = tmp / "demo.json"
    sqlsnap.export(f"sqlite:///{db}", str(snap))
    result = inspect(str(snap))
    meta = dict(result.metadata, exported_at="2026-11-22T10:00:00Z")
    meta["source"] = dict(meta["source"], database="demo.db")
    return InspectResult("demo.json", meta, result.tables, result.orphans).to_markdown()


def test_the_demo_example_is_current(tmp_path: Path) -> None:
    assert EXAMPLE.read_text() == demo_markdown(tmp_path), (
        "docs/examples/demo-inspect.md is out of date; regenerate it with "
        ".venv/bin/python -m tests.test_inspect")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        EXAMPLE.parent.mkdir(parents=True, exist_ok=True)
        EXAMPLE.write_text(demo_markdown(Path(folder)))
    sys.stdout.write(f"wrote {EXAMPLE}\n")
