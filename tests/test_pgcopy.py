"""PostgreSQL binary COPY decoded in C (issue 12): the default path writes the same bytes as
the server-JSON path (``binary_copy=False`` / ``--no-binary-copy``), for every type and edge
case of test_types_postgresql and test_postgresql_paths, for the demo database, and under
policies; a malformed stream fails with one line; without the extension the server builds
the JSON."""

from __future__ import annotations

import gc
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sqlsnap
from sqlsnap import demo
from sqlsnap.sources import pgbinary, postgresql
from tests.conftest import PG_ADMIN_URL, SQLSNAP, pg_database, unique_name
from tests.test_postgresql_paths import all_types_url, data_part  # noqa: F401 - a fixture

pytestmark = pytest.mark.postgresql

KEY = "key-0123456789abcdef"

#: Rules of every kind on columns of every type the decoder writes, so that the values a
#: transform receives come from the decoder (tests/test_policy.py has the rules' meaning).
POLICY = """
[rules]
"everything.i4" = "hash"
"everything.i8" = "hash"
"everything.n" = "hash"
"everything.f8" = "hash"
"everything.b" = "hash"
"everything.tx" = { rule = "truncate", length = 5 }
"everything.vc" = "mask"
"everything.u" = "hash"
"everything.m" = "hash"
"everything.jb" = "hash"
"everything.j" = "hash"
"everything.tstz" = { rule = "shift-dates", owner = "id" }
"everything.ts" = { rule = "shift-dates", owner = "u" }
"everything.dt" = { rule = "shift-dates", owner = "id" }
"everything.by" = "hash"
"everything.iv" = "hash"
"everything.ip" = "hash"
"everything.mo" = "null"
"everything.x" = "redact"
"everything.co" = "drop"
"texts.ch" = { rule = "fake", kind = "name" }
"big.t" = { rule = "truncate", length = 3 }
"big.n" = "hash"
"""


@pytest.fixture(autouse=True)
def c_extension() -> None:
    if postgresql._PGCOPY is None:
        if os.environ.get("SQLSNAP_REQUIRE_SERVERS"):
            pytest.fail("sqlsnap._pgcopy is not built or cannot bind libpq (pip install -e . needs gcc)")
        pytest.skip("sqlsnap._pgcopy is not built")


class Paths:
    """Counts the reads of each path, so a comparison cannot pass by reading one path twice."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = {"_read_binary": 0, "_read_server_json": 0, "_read_portable": 0}
        self.spliced = 0
        for name in self.calls:
            original = getattr(postgresql._PostgresReader, name)

            def spy(reader: Any, *args: Any, _original: Any = original, _name: str = name) -> Any:
                self.calls[_name] += 1
                return _original(reader, *args)

            monkeypatch.setattr(postgresql._PostgresReader, name, spy)
        plan_init = pgbinary.Plan.__init__

        def count_splices(plan: pgbinary.Plan, *args: Any) -> None:
            plan_init(plan, *args)
            self.spliced += plan.splice is not None

        monkeypatch.setattr(pgbinary.Plan, "__init__", count_splices)

    def take(self) -> dict[str, int]:
        calls = {k: v for k, v in self.calls.items() if v}
        for k in self.calls:
            self.calls[k] = 0
        return calls


def both_ways(url: str, tmp_path: Path, paths: Paths, tables: int, **options: Any) -> tuple[bytes, bytes]:
    binary, server = tmp_path / "binary.json", tmp_path / "server.json"
    # force: the same files again for each case (an existing snapshot is refused otherwise).
    r1 = sqlsnap.export(url, str(binary), force=True, **options)
    reads = paths.take()
    assert list(reads) == ["_read_binary"] and reads["_read_binary"] >= tables
    r2 = sqlsnap.export(url, str(server), binary_copy=False, force=True, **options)
    assert paths.take() == {"_read_server_json": reads["_read_binary"]}
    a, b = data_part(binary), data_part(server)
    if a != b:  # show the first differing row rather than megabytes
        for la, lb in zip(a.split(b"\n"), b.split(b"\n")):
            assert la == lb
    assert a == b
    assert {t: r.checksum for t, r in r1.tables.items()} == {t: r.checksum for t, r in r2.tables.items()}
    return a, b


def test_every_type_is_byte_identical_to_the_server_json(
    all_types_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    paths = Paths(monkeypatch)
    tables = 18
    plain, _ = both_ways(all_types_url, tmp_path, paths, tables, jobs=1)
    both_ways(all_types_url, tmp_path, paths, tables, jobs=2)
    assert b'"tstz":"0044-03-15T10:00:00Z BC"' in plain and b'"iv":"P-1DT-1S"' in plain
    assert len(plain) > 1 << 20  # the table "big" spans several chunks
    # Tables split into page ranges (ctid) read each range the same way.
    monkeypatch.setattr("sqlsnap.exporter.channel.PART_BYTES", 64 * 1024)
    assert both_ways(all_types_url, tmp_path, paths, tables, jobs=2)[0] == plain
    assert paths.calls == {"_read_binary": 0, "_read_server_json": 0, "_read_portable": 0}
    anonymized, _ = both_ways(all_types_url, tmp_path, paths, tables, jobs=1, anonymize=True, hash_key=KEY)
    assert anonymized != plain


def test_policies_transform_values_decoded_from_binary(
    all_types_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """Every rule on columns of every decoded type: the transforms get the same values as
    from the server's JSON, and only those values leave C (the rest of the row is C's)."""
    paths = Paths(monkeypatch)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    plain, _ = both_ways(all_types_url, tmp_path, paths, 18, jobs=1)
    paths.spliced = 0
    data, _ = both_ways(all_types_url, tmp_path, paths, 18, jobs=2, policy=str(policy), hash_key=KEY)
    assert paths.spliced == 3  # everything, texts and big: the tables with transforms
    assert data != plain
    rows = [line for line in data.split(b"\n") if b'"r.x":' in line]  # the table everything
    assert len(rows) == 6
    assert all(b'"mo":null' in row and b'"co":' not in row and b'"x":"' in row for row in rows)


def test_jsonl_is_byte_identical(all_types_url: str, tmp_path: Path) -> None:  # noqa: F811
    binary, server = tmp_path / "binary", tmp_path / "server"
    sqlsnap.export(all_types_url, str(binary), format="jsonl")
    sqlsnap.export(all_types_url, str(server), format="jsonl", binary_copy=False)
    names = sorted(os.listdir(binary))
    assert names == sorted(os.listdir(server)) and "everything.jsonl" in names
    for name in names:
        if name != "metadata.json":
            assert (binary / name).read_bytes() == (server / name).read_bytes(), name


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    with pg_database() as url:
        with psycopg.connect(url) as conn:
            demo.build(conn, "postgresql", 1)
            conn.commit()
        yield url


@pytest.mark.parametrize("options", [{}, {"anonymize": True, "hash_key": KEY}], ids=["plain", "anonymize"])
def test_demo_database_is_byte_identical(demo_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         options: dict[str, Any]) -> None:
    paths = Paths(monkeypatch)
    tables = len(demo.table_row_counts(1))
    data, _ = both_ways(demo_url, tmp_path, paths, tables, jobs=2, **options)
    assert data.count(b"\n") > 5000


def test_cli_no_binary_copy_gives_the_same_document(all_types_url: str, tmp_path: Path) -> None:  # noqa: F811
    binary, server = tmp_path / "binary.json", tmp_path / "server.json"
    for path, extra in ((binary, []), (server, ["--no-binary-copy"])):
        proc = subprocess.run([SQLSNAP, "export", all_types_url, "-q", "-o", str(path), *extra],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    assert data_part(binary) == data_part(server)


def test_a_malformed_stream_fails_with_one_line_and_leaves_no_file(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server sends a column the decoder was not told about (text where an int4 was
    asked for): the export fails with one line naming the table and why, cancels the COPY,
    and leaves no file."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int, v text)")
        conn.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 200000) g")
    column = pgbinary.column

    def wrong(name: str, *args: Any) -> tuple[str, int]:
        expr, code = column(name, *args)
        return (f"{expr}::text", code) if name == "id" else (expr, code)

    monkeypatch.setattr(pgbinary, "column", wrong)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    error = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the failed export's spool file
        try:
            sqlsnap.export(pg_url, str(out_dir / "out.json"), jobs=1)
        except sqlsnap.SnapError as exc:
            error = str(exc)
        gc.collect()
    assert error == ("reading table t failed: malformed binary COPY data from the server for t: "
                     "a value of the wrong size or out of its type's range")
    assert os.listdir(out_dir) == []


def test_without_the_extension_the_server_builds_the_json(
    all_types_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """No compiler at install time: sqlsnap._pgcopy is missing, and the same bytes come from
    the server's JSON, read in Python."""
    paths = Paths(monkeypatch)
    with_c, without = tmp_path / "c.json", tmp_path / "none.json"
    sqlsnap.export(all_types_url, str(with_c), jobs=1)
    paths.take()
    monkeypatch.setattr(postgresql, "_PGCOPY", None)
    sqlsnap.export(all_types_url, str(without), jobs=1)
    assert paths.take() == {"_read_server_json": 18}
    assert data_part(with_c) == data_part(without)


def test_a_database_in_another_encoding_is_read_as_server_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decoder writes UTF-8; with another client encoding (a LATIN1 database) the server
    builds the JSON, as before (docs/format.md)."""
    paths = Paths(monkeypatch)
    name = unique_name("sqlsnap_pgcopy_latin1")
    with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE \"{name}\" ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                      "TEMPLATE template0")
    try:
        url = f"{PG_ADMIN_URL}/{name}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int, v text)")
            conn.execute("INSERT INTO t VALUES (1, 'plain ascii')")
        out = tmp_path / "out.json"
        sqlsnap.export(url, str(out), jobs=1)
        assert paths.take() == {"_read_server_json": 1}
        assert b'{"id":1,"v":"plain ascii"}' in out.read_bytes()
    finally:
        with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


#: Random values from the server itself (a fixed seed), over the whole range of each type the
#: decoder writes: BC and far-future timestamps, odd time zone offsets, intervals of mixed
#: signs, numerics of every scale, floats of every magnitude, text over the whole BMP.
RANDOM_ROWS = 20000
RANDOM = [
    "SELECT setseed(0.42)",
    f"""CREATE TABLE randoms AS SELECT g AS id,
      ts, ts::date AS d, ts::timestamptz AS tstz, ts::time AS tm,
      (ts::time::text || (ARRAY['+05:30', '-03', '+00:00:17', '-11:45', '+00'])[1 + g % 5])::timetz AS ttz,
      (g % 7 - 3) * interval '1 month' * (random() * 300)::int
        + (g % 5 - 2) * interval '1 day' * (random() * 400)::int
        + (CASE WHEN g % 3 = 0 THEN 0 ELSE (random() - 0.5) * 1e12 END)::bigint
          * interval '1 microsecond' AS iv,
      round(((random() - 0.5) * 10 ^ (g % 40 - 20))::numeric, g % 30) AS n,
      (random()::numeric * 10 ^ (g % 60)) AS n2,
      (random() - 0.5) * power(10::float8, g % 600 - 300) AS f8,
      ((random() - 0.5) * power(10::float8, g % 70 - 35))::real AS f4,
      (SELECT string_agg(chr(1 + (random() * 55000)::int + 0 * k), '')
         FROM generate_series(1, g % 20) k) AS tx,
      decode(md5(g::text) || md5((g + 1)::text), 'hex') AS by,
      jsonb_build_object('a', random(), 'b', g, 'c', ARRAY[g, NULL]) AS jb,
      ARRAY[round(random()::numeric, g % 9), NULL, 'NaN'] AS an,
      ARRAY[random(), 'Infinity'::float8, NULL] AS af,
      ('[' || g % 5 || ':' || (g % 5 + 1) || '][0:1]={{{{1,2}},{{3,NULL}}}}')::int8[] AS a8,
      ARRAY[md5(g::text), NULL, E'q"\\\\ ' || chr(1 + g % 31)] AS at
    FROM generate_series(1, {RANDOM_ROWS}) g,
    LATERAL (SELECT timestamp '2000-01-01'
        + ((random() - 0.5) * 4e11)::bigint * interval '1 second'
        + (random() * 1e6)::int * interval '1 microsecond'
        + CASE WHEN g % 100 = 0 THEN interval '250000 years' ELSE interval '0' END AS ts) t""",
]


def test_random_values_are_byte_identical(pg_url: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for stmt in RANDOM:
            conn.execute(stmt)
        kinds = conn.execute("SELECT count(*) FILTER (WHERE ts < '0001-01-01'), count(DISTINCT n),"
                             " count(*) FILTER (WHERE ts > '9999-12-31') FROM randoms").fetchone()
    assert kinds is not None and kinds[0] > 1000 and kinds[1] > 10000 and kinds[2] >= 100
    paths = Paths(monkeypatch)
    data, _ = both_ways(pg_url, tmp_path, paths, 1, jobs=1)
    assert data.count(b"\n") > RANDOM_ROWS
    assert b' BC"' in data


def test_rows_larger_than_a_chunk(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row longer than a chunk (CHUNK_BYTES) grows the chunk being written, mid-row."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE huge (id int, b bytea, t text, j jsonb)")
        conn.execute("INSERT INTO huge SELECT g, decode(repeat(md5(g::text), 100000), 'hex'),"
                     " repeat(E'x\\n\"', 700000), jsonb_build_object('k', repeat('y', 3000000))"
                     " FROM generate_series(1, 3) g")
    paths = Paths(monkeypatch)
    data, _ = both_ways(pg_url, tmp_path, paths, 1, jobs=1)
    assert len(data) > 20_000_000  # 8.6 MB a row
