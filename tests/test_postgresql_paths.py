"""PostgreSQL's two read paths, server JSON (default) and portable (``server_json=False`` /
``--no-server-json``), must write byte-identical data for every type (docs/format.md)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sqlsnap
from tests.conftest import SQLSNAP
from tests.test_types_postgresql import fill_types

pytestmark = pytest.mark.postgresql


#: One table with a column of every type, several rows of hard values, plus the per-type
#: tables of test_types_postgresql.
EVERYTHING = """
CREATE TABLE everything (
  id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, n numeric, n2 numeric(10,2), f4 real, f8 double precision,
  b bool, tx text, vc varchar(20), ch char(5), u uuid, m mood, d posint, e email, am amount, dj doc,
  dl intlist, j json, jb jsonb, ai int[], at text[], an numeric[], a2 int[][], af float8[], ajb jsonb[],
  ad date[], ac char(3)[], ainet inet[], ae mood[], dt date, ts timestamp, tstz timestamptz, tm time,
  ttz timetz, iv interval, by bytea, ip inet, ci cidr, mac macaddr, mo money, bi bit(4), vb varbit(8),
  rng int4range, tr tstzrange, p point, bx box, x xml, co pair, tv tsvector, "r.x" text, "select" int,
  "we""ird col" text, "é 日本" text, "r" text
)
"""
ROWS = [
    """INSERT INTO everything VALUES (1, -32768, -2147483648, -9223372036854775808,
  '1234567890123456789012345678901234567890.123456789012345678901234567890', 0.10, 1.1, 1.1, true,
  E'q"uo\\'te \\\\ nl\\n cr\\r tab\\t \\x01 \\x1f \\x7f 😀 \\u2028', 'abc  ', 'ab',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', 5, 'a@b', '1.00000000000000000001',
  '{"k": [1, 2.50]}', '{3,NULL}', '{"b": [1, 2.50, {"c": null}], "a": "x", "a": "dup"}',
  '{"b": [1, 2.50e0, {"c": null}], "a": "x", "small": 1e-7}', '{1,NULL,3}', '{"a","b,c",NULL,"q\\"t","NULL"}',
  '{1.5,NaN,Infinity,-Infinity,0.0000001}', '{{1,2},{3,4}}', '{1.1,NaN,-Infinity,1e20}',
  ARRAY['{"a": 1}'::jsonb, 'null'], '{2020-01-01,infinity}', '{a,NULL,"b c"}', '{192.168.0.1,::1/64}',
  '{sad,happy}', '0044-03-15 BC', '2026-11-22 14:30:00.5', '2026-11-22 14:30:00+02', '10:00:00.123',
  '10:00:00+02', '1 year 2 months 3 days 4 hours 5 minutes 6.7 seconds', '\\x00ff10', '192.168.0.1/24',
  '10.0.0.0/8', '08:00:2b:01:02:03', 12.34, B'0101', B'101', '(1,5]', '[2020-01-01 00:00+02, 2020-01-02)',
  '(1.5,2)', '((0,0),(1,1))', '<a>x &amp; y</a>', ROW(1, 'x,y'), 'a fat cat', 'rx', 1, 'w', 'é', 'alias')""",
    """INSERT INTO everything (id, n, f4, f8, dt, ts, tstz, an, ai, at, iv, by, jb, j, tx)
  VALUES (2, '0.0000001', 'NaN', 'Infinity', 'infinity', '-infinity', 'infinity', '{}', '{}', '{NULL}',
  '-1 day -00:00:01', '', 'null', '[]', '')""",
    """INSERT INTO everything (id, n, f4, f8, dt, tstz, i8, ts, jb, j)
  VALUES (3, 'NaN', '-Infinity', 5e-324, '-infinity', '0044-03-15 12:00:00+02 BC', 9223372036854775807,
  '0044-03-15 10:00:00 BC', '"s"', '42')""",
    "INSERT INTO everything (id, n, f8, iv, f4) VALUES (4, 'Infinity', 1e20, '0', '1e-45'),"
    " (5, '-Infinity', 0.30000000000000004, '1 mon -1 days', 3.4028235e38), (6, NULL, NULL, NULL, NULL)",
]
MORE = [
    # A table larger than one chunk (CHUNK_BYTES), so chunk boundaries are compared too.
    "CREATE TABLE big (id int PRIMARY KEY, t text, n numeric, ts timestamptz)",
    "INSERT INTO big SELECT g, repeat(chr(32 + g % 90), 300) || E'\\n', g / 7.0,"
    " '2026-01-01 00:00+05'::timestamptz + g * interval '1 second' FROM generate_series(1, 5000) g",
    "CREATE TABLE empty_one (id int)",
    "CREATE TABLE no_columns ()",
    "INSERT INTO no_columns DEFAULT VALUES",
    "INSERT INTO no_columns DEFAULT VALUES",
    "CREATE TABLE parted (id int, v text) PARTITION BY RANGE (id)",
    "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10)",
    "CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (10) TO (100)",
    "INSERT INTO parted SELECT g, 'v' || g FROM generate_series(1, 20) g",
    'CREATE TABLE "Weird ""Name"" é" ("r" int, "row" text)',
    """INSERT INTO "Weird ""Name"" é" VALUES (1, 'x')""",
]


@pytest.fixture
def all_types_url(pg_url: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        fill_types(conn)
        conn.execute(EVERYTHING)
        for stmt in ROWS + MORE:
            conn.execute(stmt)
        name = pg_url.rsplit("/", 1)[1]
        conn.execute(f"""ALTER DATABASE "{name}" SET timezone TO 'America/St_Johns'""")
        conn.execute(f"""ALTER DATABASE "{name}" SET datestyle TO 'German'""")
        conn.execute(f"""ALTER DATABASE "{name}" SET extra_float_digits TO 0""")
    return pg_url


def data_part(path: Path) -> bytes:
    raw = path.read_bytes()
    return raw[raw.index(b'\n"data": {'):]


def test_document_data_is_byte_identical(all_types_url: str, tmp_path: Path) -> None:
    server = tmp_path / "server.json"
    portable = tmp_path / "portable.json"
    r1 = sqlsnap.export(all_types_url, str(server), jobs=2)
    r2 = sqlsnap.export(all_types_url, str(portable), server_json=False, jobs=1)
    a, b = data_part(server), data_part(portable)
    if a != b:  # show the first differing row rather than two megabytes
        for la, lb in zip(a.split(b"\n"), b.split(b"\n")):
            assert la == lb
    assert a == b
    assert {t: r.checksum for t, r in r1.tables.items()} == {t: r.checksum for t, r in r2.tables.items()}
    doc = json.loads(server.read_bytes())
    # The comparison covered real data: every table, with the rows expected.
    assert doc["metadata"]["tables"]["everything"]["rows"] == 6
    assert doc["metadata"]["tables"]["big"]["rows"] == 5000
    assert doc["data"]["no_columns"] == [{}, {}]
    assert len(doc["data"]["parted"]) == 20
    assert doc["data"]['Weird "Name" é'] == [{"r": 1, "row": "x"}]
    assert doc["data"]["everything"][0]["r"] == "alias" and doc["data"]["everything"][0]["r.x"] == "rx"
    assert len(a) > 1 << 20


def test_jsonl_files_are_byte_identical(all_types_url: str, tmp_path: Path) -> None:
    server, portable = tmp_path / "server", tmp_path / "portable"
    sqlsnap.export(all_types_url, str(server), format="jsonl")
    sqlsnap.export(all_types_url, str(portable), format="jsonl", server_json=False)
    files = sorted(os.listdir(server))
    assert files == sorted(os.listdir(portable))
    assert "everything.jsonl" in files and "metadata.json" in files
    for name in files:
        if name != "metadata.json":
            assert (server / name).read_bytes() == (portable / name).read_bytes(), name


def test_cli_no_server_json_flag_gives_the_same_document(all_types_url: str, tmp_path: Path) -> None:
    server, portable = tmp_path / "server.json", tmp_path / "portable.json"
    for path, extra in ((server, []), (portable, ["--no-server-json"])):
        proc = subprocess.run([SQLSNAP, "export", all_types_url, "-q", "-o", str(path), *extra],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    assert data_part(server) == data_part(portable)


def test_c_reader_is_built_and_bound() -> None:
    """The C reader of COPY (sqlsnap/_pgcopy.c) is optional at install time, but where the
    suite must prove everything (CI) it must be built and find psycopg's libpq."""
    from sqlsnap.sources import postgresql

    if postgresql._PGCOPY is None:
        if os.environ.get("SQLSNAP_REQUIRE_SERVERS"):
            pytest.fail("sqlsnap._pgcopy is not built or cannot bind libpq (pip install -e . needs gcc)")
        pytest.skip("sqlsnap._pgcopy is not built")
    assert "libpq" in postgresql._PGCOPY.bind()


def test_c_reader_refuses_binary_copy_that_is_not_one_field_a_row(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C reader reads binary COPY of one json column. Rows of two fields (a server that
    sent something else) fail the export with one line, cancel the COPY, leave no file."""
    from sqlsnap.sources import postgresql

    if postgresql._PGCOPY is None:
        pytest.skip("sqlsnap._pgcopy is not built")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 3)")
    # Two fields a row, with rows still to come when the first one is refused.
    two_fields = ("COPY (SELECT '{}'::json, g FROM generate_series(1, 2000000) g) "
                  "TO STDOUT (FORMAT binary)")
    monkeypatch.setattr(postgresql._PostgresReader, "server_sql",
                        lambda self, table, projection=None, binary=False: two_fields)
    out = tmp_path / "out.json"
    with pytest.raises(sqlsnap.SnapError, match=r"^reading table t failed: unexpected binary COPY data "
                                                r"from the server for t$"):
        sqlsnap.export(pg_url, str(out), jobs=1, binary_copy=False)
    assert os.listdir(tmp_path) == []


def test_c_reader_and_python_reader_write_the_same_bytes(
    all_types_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Binary COPY read in C and CSV COPY read in Python give the same document, chunk
    boundaries included (the table "big" spans several chunks)."""
    from sqlsnap.sources import postgresql

    if postgresql._PGCOPY is None:
        pytest.skip("sqlsnap._pgcopy is not built")
    # Plain, and anonymized: a policy's projection is read as CSV lines, in C too.
    options: list[dict[str, Any]] = [{}, {"anonymize": True, "hash_key": "key-0123456789abcdef"}]
    results = []
    for i, extra in enumerate(options):
        in_c, in_python = tmp_path / f"c{i}.json", tmp_path / f"python{i}.json"
        with monkeypatch.context() as patch:
            r1 = sqlsnap.export(all_types_url, str(in_c), jobs=1, binary_copy=False, **extra)
            patch.setattr(postgresql, "_PGCOPY", None)
            r2 = sqlsnap.export(all_types_url, str(in_python), jobs=1, binary_copy=False, **extra)
        assert data_part(in_c) == data_part(in_python), extra
        assert {t: r.checksum for t, r in r1.tables.items()} == {t: r.checksum for t, r in r2.tables.items()}
        assert r1.tables["big"].rows == 5000 and r1.tables["everything"].rows == 6
        results.append(data_part(in_c))
    assert results[0] != results[1]  # the policy changed values: the projected path was read
