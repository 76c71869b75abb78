"""A single huge value is read and written in pieces (docs/reliability.md, "Memory"): the
same bytes as reading it whole, without holding it whole (bench/huge_value.py measures the
peak RSS; these tests check the bytes, and Python's own peak)."""

from __future__ import annotations

import json
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import sqlsnap
from sqlsnap.sources import sqlite as sqlite_source
from sqlsnap.writers import document


def data_of(path: Path) -> bytes:
    raw = path.read_bytes()
    return raw[raw.index(b'\n"data": {'):]


def spy_on_huge_rows(monkeypatch: pytest.MonkeyPatch, reader: Any, row_id: Any) -> list[tuple[str, Any]]:
    """The (table, id) of each row the reader writes in pieces (its ``_huge_row``)."""
    streamed: list[tuple[str, Any]] = []
    huge_row = reader._huge_row

    def spy(self: Any, table: Any, row: Any) -> Any:
        streamed.append((table.name, row_id(row)))
        return huge_row(self, table, row)

    monkeypatch.setattr(reader, "_huge_row", spy)
    return streamed


def make_sqlite(path: Path) -> None:
    big = "".join(chr(c) for c in range(1, 0x2FF)) * 40 + 'é"\\\n\t\x00\U0001f600' * 300
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, body TEXT, data BLOB, loose, doc JSON,"
            " n INTEGER);"
            "CREATE TABLE w (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;")
        rows: list[tuple[Any, ...]] = [
            (1, "small", "short", b"\x00\x01", 7, '{"a": 1}', 1),
            (2, "text", big, None, None, None, 2),
            (3, "blob", None, bytes(range(256)) * 97 + b"\xff", b"\x01" * 10_001, None, 3),
            (4, "text in blob", "x", big, big[:9000], '"s"', None),
            (5, "bad utf-8", None, None, None, None, None),
            (6, "two", big[::-1], bytes(range(256)) * 50, big, None, 6),
        ]
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        # Text that is not UTF-8 (SQLite does not check): written as $text_base64.
        conn.execute("UPDATE t SET body = CAST(? AS TEXT) WHERE id = 5", (b"ok\xff\xfe" * 3000,))
        conn.execute("INSERT INTO w VALUES ('a', ?)", (big,))


def test_sqlite_huge_values_are_read_in_pieces_and_written_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "huge.db"
    make_sqlite(db)
    url = f"sqlite:///{db}"
    sqlsnap.export(url, str(tmp_path / "whole.json"))
    reference = data_of(tmp_path / "whole.json")

    # Values over 3000 characters are huge; pieces of 1000 bytes end inside characters (the
    # text holds 2- and 4-byte ones) and base64 groups; the writer slices its chunks too.
    monkeypatch.setattr(sqlite_source, "HUGE_VALUE", 3000)
    monkeypatch.setattr(sqlite_source, "PIECE_CHARS", 1000)
    monkeypatch.setattr(document, "SLICE_BYTES", 777)
    streamed = spy_on_huge_rows(monkeypatch, sqlite_source._SQLiteReader, lambda row: row[0])
    out = tmp_path / "pieces.json"
    result = sqlsnap.export(url, str(out))
    assert streamed == [("t", 2), ("t", 3), ("t", 4), ("t", 5), ("t", 6)]  # really in pieces
    assert data_of(out) == reference
    assert result.tables["t"].rows == 6 and sqlsnap.verify(str(out)).ok
    doc = json.loads(out.read_bytes())
    assert doc["data"]["t"][4]["body"] == {"$text_base64": sqlsnap_b64(b"ok\xff\xfe" * 3000)}

    # JSON Lines: the same rows, one a line.
    sqlsnap.export(url, str(tmp_path / "lines"), format="jsonl")
    lines = (tmp_path / "lines" / "t.jsonl").read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == doc["data"]["t"]


def sqlsnap_b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_sqlite_huge_value_is_never_held_whole_by_python(tmp_path: Path) -> None:
    """A 40 MiB text value (over HUGE_VALUE, 16 MiB): Python's allocations peak far below the
    value (held whole they were 2.5x it: the str, and the JSON in msgspec's growing buffer)."""
    size = 40 << 20
    db = tmp_path / "one.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t VALUES (1, ?)", ("x" * size,))
    tracemalloc.start()
    try:
        sqlsnap.export(f"sqlite:///{db}", str(tmp_path / "out.json"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "out.json").stat().st_size > size
    assert peak < size // 2, f"Python's peak {peak >> 20} MiB for a value of {size >> 20} MiB"


PG_TABLES = [
    # Values of random text (md5s: they do not compress, so they are stored in the TOAST table),
    # with characters of 2, 3 and 4 bytes and escapes inside; NULLs, short ones, and bytea.
    "CREATE TABLE t (id int PRIMARY KEY, name varchar(20), body text, data bytea, note varchar,"
    " tags text[], n numeric)",
    "INSERT INTO t SELECT g, 'row {' || g || '}',"  # a value ending in a brace, then its quote
    " CASE WHEN g % 3 = 0 THEN NULL ELSE (SELECT string_agg(md5(g::text || i::text) || 'é€\"\\\n\t😀', '')"
    "   FROM generate_series(1, 40 * g) i) END,"
    " CASE WHEN g % 2 = 0 THEN decode((SELECT string_agg(md5(i::text || g::text), '')"
    "   FROM generate_series(1, 50 * g) i), 'hex') END,"
    " CASE WHEN g = 4 THEN repeat('ü', 5000) ELSE 'short' END, ARRAY['a', 'b'], g * 1.5"
    " FROM generate_series(1, 6) g",
    # A table whose TOAST table is empty: read as it always was.
    "CREATE TABLE small (id int PRIMARY KEY, v text)",
    "INSERT INTO small VALUES (1, 'x'), (2, NULL)",
]


@pytest.mark.postgresql
@pytest.mark.parametrize("jobs", [1, 2])
def test_postgresql_huge_values_are_read_in_pieces_and_written_the_same(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    from sqlsnap.sources import postgresql
    from tests.conftest import execute_script

    execute_script(pg_url, PG_TABLES)
    sqlsnap.export(pg_url, str(tmp_path / "whole.json"), jobs=jobs)
    reference = data_of(tmp_path / "whole.json")
    sqlsnap.export(pg_url, str(tmp_path / "server.json"), jobs=jobs, binary_copy=False)
    assert data_of(tmp_path / "server.json") == reference

    # Values over 3000 bytes are left out of the COPY and read 1000 characters or bytes at a
    # time (pieces end inside base64 groups), written out 700 at a time.
    monkeypatch.setattr(postgresql, "HUGE_VALUE", 3000)
    monkeypatch.setattr(postgresql, "PG_PIECE_BYTES", 1000)
    monkeypatch.setattr(postgresql, "CHUNK_BYTES", 700)
    streamed = spy_on_huge_rows(monkeypatch, postgresql._PostgresReader,
                                lambda line: json.loads(line[:line.rindex(b'"', 0, -1)])["id"])
    out = tmp_path / "pieces.json"
    result = sqlsnap.export(pg_url, str(out), jobs=jobs)
    # Row 1: 1.8 kB of text; 3: NULLs and short values; the rest hold a value over 3000 bytes.
    assert sorted(streamed) == [("t", 2), ("t", 4), ("t", 5), ("t", 6)]
    assert data_of(out) == reference
    assert result.tables["t"].rows == 6 and sqlsnap.verify(str(out)).ok


@pytest.mark.postgresql
def test_postgresql_huge_value_is_never_held_whole_by_python(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 40 MiB text value (over HUGE_VALUE): held whole, Python held it six times (240 MiB:
    the binary COPY's line, grown by doubling, and copies; libpq held it twice more, which
    tracemalloc does not see). In pieces of 4 MiB, psycopg holds a piece as bytes and as str."""
    from sqlsnap.sources import postgresql
    from tests.conftest import execute_script

    monkeypatch.setattr(postgresql, "PG_PIECE_BYTES", 4 << 20)

    size = 40 << 20
    execute_script(pg_url, ["CREATE TABLE t (id int PRIMARY KEY, v text)",
                            f"INSERT INTO t VALUES (1, repeat('x', {size}))"])
    tracemalloc.start()
    try:
        sqlsnap.export(pg_url, str(tmp_path / "out.json"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "out.json").stat().st_size > size
    assert peak < size // 2, f"Python's peak {peak >> 20} MiB for a value of {size >> 20} MiB"
