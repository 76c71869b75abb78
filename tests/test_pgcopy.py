"""PostgreSQL binary COPY decoded in C (issue 12): the default path writes the same bytes as
the server-JSON path (``binary_copy=False`` / ``--no-binary-copy``), for every type and edge
case of test_types_postgresql and test_postgresql_paths, for the demo database, and under
policies; a malformed stream fails with one line; without the extension the server builds
the JSON."""

from __future__ import annotations

import gc
import math
import os
import random
import struct
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
        self.statements: list[str] = []  # the binary path's COPY statements
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
            self.statements.append(plan.sql)

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


@pytest.mark.parametrize("wrong_column", ["id", "f"])
def test_a_malformed_stream_fails_with_one_line_and_leaves_no_file(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrong_column: str
) -> None:
    """The server sends a value the decoder was not told about (text where an int4 was asked
    for; a float8's 8 bytes where a float4's 4 were): the export fails with one line naming
    the table and why, cancels the COPY, and leaves no file."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int, v text, f float8)")
        conn.execute("INSERT INTO t SELECT g, 'v' || g, g / 7.0 FROM generate_series(1, 200000) g")
    column = pgbinary.column

    def wrong(name: str, *args: Any) -> tuple[str, int]:
        expr, code = column(name, *args)
        if name != wrong_column:
            return expr, code
        return (f"{expr}::text", code) if name == "id" else (expr, pgbinary.FLOAT4)

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


# -- floats: read as stored, their digits written in C (sqlsnap/_pgfloat.c) --------------------

#: Values where a shortest-digits writer can go wrong: both zeros, the subnormals, the ends of
#: each range, the powers of ten around the switch to exponent form (float8: from 1e-5 and
#: 1e15; float4: 1e-5 and 1e6), their neighbours, sums that do not round-trip in fewer digits.
FLOAT8_EDGES = [
    "0", "-0", "1", "-1", "0.1", "0.2", "0.30000000000000004", "0.3", "1.5", "-123.456", "4.35",
    "0.3333333333333333", "0.6666666666666666", "100", "1e-5", "1e-4", "9.999999999999999e-05",
    "0.00010000000000000002", "0.0001", "0.00001", "1e-7", "1e14", "1e15", "1e16", "99999999999999.98",
    "999999999999999", "999999999999999.9", "1000000000000000.1", "123456789012345", "1234567890123456",
    "9007199254740992", "9007199254740993", "9223372036854775807", "1e21", "1e22", "1e23",
    "5e-324", "1e-323", "2.225073858507201e-308", "2.2250738585072014e-308", "1e-320", "4.9e-324",
    "1.7976931348623157e308", "-1.7976931348623157e308", "1.2345678901234567e+300", "2.5e-5",
    "1.0000000000000002", "0.9999999999999999", "8.98846567431158e307", "NaN", "Infinity", "-Infinity",
]
FLOAT4_EDGES = [
    "0", "-0", "1", "0.1", "-0.1", "3.4028235e38", "-3.4028235e38", "1e-45", "1.4e-45", "1.1754944e-38",
    "1.1754942e-38", "1e-5", "1e-4", "0.00001", "9.999999e-05", "123456", "999999", "1e6", "1000000",
    "1234567", "16777216", "16777217", "3.14159274", "1e10", "7.038531e-26", "0.30000001", "NaN",
    "Infinity", "-Infinity",
]


@pytest.fixture
def floats_url(pg_url: str) -> str:
    """Edge cases, a domain over float8 and over float8[], arrays with NULLs and several
    dimensions, and 5,000 random bit patterns of each width (a fixed seed)."""
    rng = random.Random(12)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE DOMAIN dfloat AS float8")
        conn.execute("CREATE DOMAIN dfloats AS float8[]")
        conn.execute("CREATE TABLE floats (id int PRIMARY KEY, f8 float8, f4 float4, d dfloat,"
                     " a8 float8[], a4 float4[], da dfloats)")
        rows = [(i, v, FLOAT4_EDGES[i % len(FLOAT4_EDGES)], v) for i, v in enumerate(FLOAT8_EDGES)]
        rows += [(len(rows) + i, bits_text(rng.getrandbits(64), 64), bits_text(rng.getrandbits(32), 32), None)
                 for i in range(5000)]
        with conn.cursor().copy("COPY floats (id, f8, f4, d) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("""UPDATE floats SET
            a8 = ARRAY[f8, NULL, -f8, 'NaN'], a4 = CASE WHEN id % 3 = 0 THEN ARRAY[[f4, NULL], [-f4, 1e-45]]
              ELSE ARRAY[f4] END,
            da = CASE WHEN id % 2 = 0 THEN ARRAY[d, NULL] END WHERE id % 5 <> 4""")
        conn.execute("""UPDATE floats SET a8 = '[0:1][2:3][1:1]={{{1.5},{NULL}},{{-Infinity},{1e300}}}',
            a4 = '{}', da = '{}' WHERE id = 4""")
        conn.execute("INSERT INTO floats (id) VALUES (-1)")
    return pg_url


def bits_text(bits: int, width: int) -> str:
    """The float of these bits as text that the server reads back exactly."""
    value = struct.unpack("!d", struct.pack("!Q", bits))[0] if width == 64 else \
        struct.unpack("!f", struct.pack("!I", bits))[0]
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)  # a float4's value is a double exactly; strtof rounds its digits back


def test_floats_are_read_as_stored_and_byte_identical(
    floats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """float4, float8, a domain over each of float8 and float8[], and arrays of floats come
    from the server in binary (no ::text left in the statement) and are written as the
    server-JSON path writes them, byte for byte."""
    paths = Paths(monkeypatch)
    data, _ = both_ways(floats_url, tmp_path, paths, 1, jobs=1)
    assert paths.statements == ['COPY (SELECT "id", "f8", "f4", "d", "a8", "a4", "da" FROM ONLY '
                                '"public"."floats") TO STDOUT (FORMAT binary)']
    assert data.count(b"\n") > 5000
    first = data[data.index(b'{"id":0,'):].split(b"\n")[0].rstrip(b",")
    assert first == (b'{"id":0,"f8":0,"f4":0,"d":0,"a8":[0,null,-0,"NaN"],"a4":[[0,null],[-0,1e-45]],'
                     b'"da":[0,null]}')
    for expected in (b'"f8":1e-05,', b'"f8":0.0001,', b'"f8":1e+15,', b'"f8":123456789012345,',
                     b'"f8":"NaN"', b'"f8":1.2345678901234567e+300,', b'"f4":3.4028235e+38,', b'"f4":999999,',
                     b'"f4":1e+06,', b'"f8":-0,', b'"f8":5e-324,', b'"f4":"-Infinity"'):
        assert expected in data, expected
    assert b'"a8":[[[1.5],[null]],[["-Infinity"],[1e+300]]],"a4":[],"da":[]' in data


@pytest.fixture(scope="module")
def float_server() -> Iterator[Any]:
    """A connection with sqlsnap's session settings (extra_float_digits=1) to a database of
    one table, refilled by each example."""
    with pg_database() as url:
        with psycopg.connect(url, autocommit=True, options=postgresql.SESSION_OPTIONS) as conn:
            conn.execute("CREATE TABLE f (id int, f8 float8, f4 float4)")
            yield conn


FLOAT_PROGRAM = [((b"[" if i == 0 else b","), i, pgbinary.NULL_JSON) for i in range(2)] + [(b"]\n", -1, 0)]
BITS64 = st.integers(0, 2**64 - 1).map(lambda b: bits_text(b, 64))
BITS32 = st.integers(0, 2**32 - 1).map(lambda b: bits_text(b, 32))
DOUBLES = st.floats(allow_nan=True, allow_infinity=True).map(lambda v: bits_text(struct.unpack(
    "!Q", struct.pack("!d", v))[0], 64))
SINGLES = st.floats(width=32).map(lambda v: bits_text(struct.unpack("!I", struct.pack("!f", v))[0], 32))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(DOUBLES | BITS64, SINGLES | BITS32), min_size=1, max_size=300))
def test_random_floats_are_the_servers_own_text(float_server: Any, values: list[tuple[str, str]]) -> None:
    """Each value's JSON from the binary COPY is the server's text of it (``x::text``), as a
    number, or as a string for NaN and the infinities."""
    conn = float_server
    conn.execute("TRUNCATE f")
    with conn.cursor().copy("COPY f FROM STDIN") as copy:
        for i, (f8, f4) in enumerate(values):
            copy.write_row((i, f8, f4))
    texts = conn.execute("SELECT f8::text, f4::text FROM f ORDER BY id").fetchall()
    with conn.cursor().copy("COPY (SELECT f8, f4 FROM f ORDER BY id) TO STDOUT (FORMAT binary)") as copy:
        messages = [bytes(m) for m in copy]
    program = postgresql._PGCOPY.program(bytes([pgbinary.FLOAT8, pgbinary.FLOAT4]), FLOAT_PROGRAM)
    status, out, rows, reason = postgresql._PGCOPY.decode(program, messages)
    assert status == postgresql._PGCOPY.DONE and rows == len(values), reason
    expected = [f"[{json_token(a)},{json_token(b)}]" for a, b in texts]
    assert out.decode().split("\n")[:-1] == expected


def json_token(text: str) -> str:
    return f'"{text}"' if text in ("NaN", "Infinity", "-Infinity") else text


def test_floats_from_a_server_before_12_are_asked_for_as_text() -> None:
    """PostgreSQL 11 and older write other digits (extra_float_digits=1: 16 significant), so
    their floats come as the server's text."""
    def scalar(typname: str, version: int) -> tuple[str, int]:
        return pgbinary.column("f", typname, "b", "number", None, None, '"f"', version)

    def array(typname: str, version: int) -> tuple[str, int]:
        return pgbinary.column("a", f"_{typname}", "b", "array", "number", typname, '"a"', version)

    assert scalar("float8", 150000) == ('"f"', pgbinary.FLOAT8)
    assert scalar("float4", 120000) == ('"f"', pgbinary.FLOAT4)
    assert scalar("float8", 110000) == ('"f"::text', pgbinary.FLOAT_TEXT)
    assert array("float4", 110000) == ('"a"::text[]', pgbinary.ARRAY + pgbinary.FLOAT_TEXT)
    assert array("float4", 160000) == \
        ('"a"', pgbinary.ARRAY + pgbinary.FLOAT4)
