"""The DuckDB target, the snapshot loader and its cache, and the safe query runner: answers
compared with the same SQL on the source database, and every escape refused with no effect."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

import sqlsnap
from sqlsnap.errors import OutputError, SnapError, UsageError

from .conftest import SQLSNAP

duckdb = pytest.importorskip("duckdb")

from sqlsnap.ai.load import cache_key, cached_database, load_snapshot  # noqa: E402
from sqlsnap.ai.query import MAX_SQL_CHARS, SafeDatabase, query, render  # noqa: E402


def build_demo(folder: Path) -> tuple[Path, Path]:
    """The demo database (scale 1) in SQLite and its snapshot (a .json.zst document)."""
    from sqlsnap import demo
    from sqlsnap.targets import connect_for_write

    db = folder / "demo.db"
    conn = connect_for_write(f"sqlite:///{db}")
    try:
        demo.build(conn, "sqlite", 1)
    finally:
        conn.close()
    snapshot = folder / "demo.json.zst"
    sqlsnap.export(f"sqlite:///{db}", str(snapshot))
    return db, snapshot


@pytest.fixture(scope="module")
def demo_snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def demo_duckdb(demo_snapshot: tuple[Path, Path]) -> str:
    return cached_database(str(demo_snapshot[1]))


def on_source(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


# -- the loader -----------------------------------------------------------------------------------


def test_every_table_loaded_with_its_rows_and_metadata_tables(demo_snapshot, demo_duckdb) -> None:
    db, snapshot = demo_snapshot
    with sqlsnap.open_snapshot(str(snapshot)) as snap:
        metadata = snap.metadata
    conn = duckdb.connect(demo_duckdb, read_only=True)
    try:
        for name, entry in metadata["tables"].items():
            assert conn.execute(f'select count(*) from "{name}"').fetchone()[0] == entry["rows"], name
        loaded = dict(conn.execute("select table_name, rows from _sqlsnap_tables").fetchall())
        assert loaded == {n: e["rows"] for n, e in metadata["tables"].items()}
        fks = conn.execute("select count(*) from _sqlsnap_foreign_keys").fetchone()[0]
        assert fks == sum(len(e["foreign_keys"]) for e in metadata["tables"].values()) > 0
        excluded = set(conn.execute("select table_name || '.' || column_name from _sqlsnap_columns "
                                    "where status = 'excluded'").fetchall())
        assert {e for (e,) in excluded} == set(metadata["policy"]["excluded_columns"])
        meta = dict(conn.execute("select key, value from _sqlsnap_metadata").fetchall())
        assert meta["total_rows"] == str(metadata["total_rows"])
        types = dict(conn.execute("select column_name, data_type from information_schema.columns "
                                  "where table_name = 'ai_request_logs'").fetchall())
        assert types["latency_ms"] == "BIGINT" and types["cost_usd"] == "DECIMAL(10,6)"
        # Foreign keys are recorded, not declared: DuckDB would refuse orphans.
        assert conn.execute("select count(*) from duckdb_constraints() where constraint_type = "
                            "'FOREIGN KEY'").fetchone()[0] == 0
    finally:
        conn.close()


def test_values_are_the_source_values(demo_snapshot, demo_duckdb) -> None:
    db, _ = demo_snapshot
    with SafeDatabase(demo_duckdb, max_rows=10_000) as safe:
        sql = "select id, name, monthly_fee, is_active, founded_on, created_at from companies order by id"
        rows = safe.query(sql).rows
        cents = Decimal("0.01")
        assert rows == [(s[0], s[1], Decimal(str(s[2])).quantize(cents), bool(s[3]), s[4], s[5])
                        for s in on_source(db, sql)]
        total = safe.query("select sum(cost_usd) from ai_request_logs").rows[0][0]
        exact = on_source(db, "select sum(cast(round(cost_usd * 1e6) as integer)) from ai_request_logs")[0][0]
        assert total == Decimal(exact) / 1_000_000


def test_jsonl_snapshot_loads_the_same(demo_snapshot, demo_duckdb, tmp_path: Path) -> None:
    db, _ = demo_snapshot
    folder = tmp_path / "jsonl"
    sqlsnap.export(f"sqlite:///{db}", str(folder), format="jsonl")
    loaded = tmp_path / "j.duckdb"
    result = load_snapshot(str(folder), str(loaded))
    with sqlsnap.open_snapshot(str(folder)) as snap:
        assert result.rows == snap.metadata["total_rows"] and result.tables == snap.metadata["total_tables"]
    sql = "select severity, count(*) from incidents group by 1 order by 1"
    with SafeDatabase(str(loaded)) as a, SafeDatabase(demo_duckdb) as b:
        assert a.query(sql).rows == b.query(sql).rows == on_source(db, sql)


def test_load_refuses_an_existing_file_and_leaves_nothing_on_failure(demo_snapshot, tmp_path: Path) -> None:
    _, snapshot = demo_snapshot
    existing = tmp_path / "x.duckdb"
    existing.write_bytes(b"keep")
    with pytest.raises(OutputError, match="already exists"):
        load_snapshot(str(snapshot), str(existing))
    assert existing.read_bytes() == b"keep"
    damaged = tmp_path / "damaged.json"
    full = subprocess.run(["zstd", "-dc", str(snapshot)], capture_output=True, check=True).stdout
    damaged.write_bytes(full[: len(full) // 2])
    with pytest.raises(SnapError):
        load_snapshot(str(damaged), str(tmp_path / "d.duckdb"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.json", "x.duckdb"]


def test_masked_columns_are_said_so(demo_snapshot, tmp_path: Path) -> None:
    db, _ = demo_snapshot
    out = tmp_path / "anon.json"
    sqlsnap.export(f"sqlite:///{db}", str(out), anonymize=True, hash_key="k" * 32)
    sql = ("select table_name || '.' || column_name, status, duckdb_type from _sqlsnap_columns "
           "where status not in ('kept', 'excluded')")
    statuses = query(str(out), sql, max_rows=1000).rows
    with sqlsnap.open_snapshot(str(out)) as snap:
        masked = snap.metadata["policy"]["masked_columns"]
    assert masked and {name for name, _, _ in statuses} == set(masked)
    assert all(kind == "VARCHAR" for _, rule, kind in statuses if rule in ("hash", "mask", "fake", "redact"))


# -- the cache ------------------------------------------------------------------------------------


def test_cache_is_keyed_by_the_sha256_and_reused(demo_snapshot, tmp_path: Path) -> None:
    _, snapshot = demo_snapshot
    copy = tmp_path / "app.json.zst"
    copy.write_bytes(snapshot.read_bytes())
    digest = cache_key(str(copy))  # no .sha256 beside the copy: computed
    assert digest == cache_key(str(snapshot))  # read from demo.json.zst.sha256
    first = cached_database(str(copy))
    assert Path(first).parent == tmp_path and digest[:16] in first
    stamp = os.stat(first).st_mtime_ns
    assert cached_database(str(copy)) == first and os.stat(first).st_mtime_ns == stamp
    elsewhere = tmp_path / "cache"
    remote = cached_database(str(copy), cache_dir=str(elsewhere))
    assert Path(remote).parent == elsewhere


# -- the DuckDB target and URLs -------------------------------------------------------------------


def test_duckdb_target_through_the_registry(tmp_path: Path) -> None:
    from sqlsnap.model import Column, ForeignKey, Table
    from sqlsnap.targets import target_class
    from sqlsnap.urls import parse_url

    url = parse_url(f"duckdb:///{tmp_path / 't.duckdb'}", target=True)
    parent = Table("p", "main", "p", [Column("id", "BIGINT", False)], primary_key=["id"])
    child = Table("c", "main", "c", [Column("id", "BIGINT", False), Column("p_id", "BIGINT", True)],
                  foreign_keys=[ForeignKey(("p_id",), "p", ("id",))])
    with target_class("duckdb").open(url) as target:
        for t in (parent, child):
            target.create_table(t)
        assert target.load(parent, iter([(1,), (2,)])) == 2
        assert target.load(child, iter([(1, 1), (2, 99)])) == 2  # an orphan: kept
        target.add_foreign_keys(child)
        target.commit()
        assert target.table_names() == ["_sqlsnap_foreign_keys", "c", "p"]
        with pytest.raises(SnapError, match="already exists"):
            target.create_table(parent)


def test_export_from_duckdb_is_a_usage_error() -> None:
    proc = subprocess.run([SQLSNAP, "export", "duckdb:///x.duckdb", "-o", "/dev/null"], capture_output=True,
                          text=True)
    assert proc.returncode == UsageError.exit_code
    assert proc.stderr.count("\n") == 1 and "cannot export from" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- the safety model -----------------------------------------------------------------------------


@pytest.mark.parametrize("sql, message", [
    ("copy incidents to '{dir}/out.csv'", "not COPY"),
    ("select * from incidents; copy incidents to '{dir}/out.csv'", "one statement per query"),
    ("select 1; drop table incidents", "one statement per query"),
    ("commit; drop table incidents", "one statement per query"),
    ("drop table incidents", "not DROP"),
    ("attach '{dir}/new.duckdb' as n", "not ATTACH"),
    ("install httpfs", "not LOAD"),
    ("load httpfs", "not LOAD"),
    ("set enable_external_access = true", "not SET"),
    ("pragma enable_external_access", "not PRAGMA"),
    ("/* harmless */ copy (select 1) to '{dir}/out.csv'", "not COPY"),
    ("select * from read_text('/etc/passwd')", "only the snapshot's tables"),
    ("select * from read_csv('/etc/passwd')", "only the snapshot's tables"),
    ("select * from '{dir}/out.csv'", "only the snapshot's tables"),
    ("select * from glob('/etc/*')", "only the snapshot's tables"),
])
def test_escapes_are_refused_with_no_effect(demo_duckdb, tmp_path: Path, sql: str, message: str) -> None:
    with SafeDatabase(demo_duckdb) as safe:
        before = safe.query("select count(*) from incidents").rows
        with pytest.raises(UsageError, match=message):
            safe.query(sql.format(dir=tmp_path))
        assert safe.query("select count(*) from incidents").rows == before
    assert list(tmp_path.iterdir()) == []


def test_the_connection_itself_refuses_when_the_parser_check_is_bypassed(demo_duckdb, tmp_path: Path) -> None:
    """Each layer holds alone: the locked connection refuses what the statement check refuses."""
    with SafeDatabase(demo_duckdb) as safe:
        conn = safe.connection
        for sql in (f"copy incidents to '{tmp_path}/out.csv'", f"attach '{tmp_path}/n.duckdb' as n",
                    "install httpfs", "load httpfs", "select * from read_text('/etc/passwd')"):
            with pytest.raises(duckdb.PermissionException):
                conn.execute(sql)
        for sql in ("set enable_external_access = true", "set lock_configuration = false",
                    "set memory_limit = '100GB'"):
            with pytest.raises(duckdb.InvalidInputException, match="locked"):
                conn.execute(sql)
        with pytest.raises(duckdb.Error, match="read-only"):
            conn.execute("drop table incidents")
    assert list(tmp_path.iterdir()) == []


def test_a_long_query_is_refused(demo_duckdb) -> None:
    sql = "select 1" + " " * MAX_SQL_CHARS
    with SafeDatabase(demo_duckdb) as safe, pytest.raises(UsageError, match="characters"):
        safe.query(sql)


def test_a_slow_query_is_stopped_at_the_time_limit(demo_duckdb) -> None:
    import time

    with SafeDatabase(demo_duckdb, timeout=0.5) as safe:
        started = time.monotonic()
        with pytest.raises(UsageError, match="longer than 0.5 s"):
            safe.query("select sum(a.range * b.range) from range(200000) a, range(200000) b")
        assert time.monotonic() - started < 5
        assert safe.query("select count(*) from incidents").rows == [(300,)]  # still usable


def test_a_million_rows_are_capped(demo_duckdb) -> None:
    with SafeDatabase(demo_duckdb, max_rows=100) as safe:
        result = safe.query("select * from range(1000000)")
    assert len(result.rows) == 100 and result.truncated
    text = render(result, "table")
    assert "only the first 100 rows" in text


def test_answers_are_cut_at_the_character_cap(demo_duckdb) -> None:
    with SafeDatabase(demo_duckdb, max_rows=1000) as safe:
        result = safe.query("select request, response from ai_request_logs")
    for fmt in ("table", "markdown", "csv", "json"):
        text = render(result, fmt, max_chars=5000)
        assert len(text) < 5500, fmt
    assert "cut at 5,000 characters" in render(result, "markdown", max_chars=5000)


def test_invalid_sql_is_one_line(demo_duckdb) -> None:
    with SafeDatabase(demo_duckdb) as safe:
        with pytest.raises(UsageError, match="not valid SQL") as err:
            safe.query("selec 1")
        assert "\n" not in str(err.value)
        with pytest.raises(SnapError, match="query failed") as err:
            safe.query("select * from no_such_table")
        assert "\n" not in str(err.value)


# -- the command ------------------------------------------------------------------------------------


def test_query_command_formats(demo_snapshot, demo_duckdb) -> None:
    import csv
    import io
    import json

    db, snapshot = demo_snapshot
    sql = "select severity, count(*) as n from incidents group by 1 order by 2 desc, 1"
    expected = on_source(db, sql)
    out = {fmt: subprocess.run([SQLSNAP, "query", str(snapshot), sql, "--format", fmt], capture_output=True,
                               text=True, check=True).stdout for fmt in ("table", "json", "csv", "markdown")}
    assert [tuple(r.values()) for r in json.loads(out["json"])["rows"]] == [(s, n) for s, n in expected]
    assert list(csv.reader(io.StringIO(out["csv"])))[1:] == [[s, str(n)] for s, n in expected]
    assert out["markdown"].splitlines()[2] == f"| {expected[0][0]} | {expected[0][1]} |"
    assert out["table"].splitlines()[0].split() == ["severity", "n"]
    refused = subprocess.run([SQLSNAP, "query", str(snapshot), "copy incidents to 'x.csv'"],
                             capture_output=True, text=True)
    assert refused.returncode == UsageError.exit_code and refused.stderr.startswith("Error: only SELECT")


def test_remote_and_encrypted_snapshots_load_into_the_cache_folder(demo_snapshot, tmp_path: Path) -> None:
    """A remote snapshot is cached in the cache folder (its SHA-256 computed, no .sha256 beside
    it); an encrypted one is read with its identity, and its key is the encrypted file's."""
    import shutil
    import uuid

    from sqlsnap.stores.memory import named

    db, snapshot = demo_snapshot
    sql = "select severity, count(*) from incidents group by 1 order by 1"
    expected = on_source(db, sql)
    store = named(f"ai-{uuid.uuid4().hex[:8]}")
    store.put("snaps/app.json.zst", snapshot.read_bytes())
    remote = f"memory://{store.name}/snaps/app.json.zst"
    cache = tmp_path / "cache"
    assert query(remote, sql, cache_dir=str(cache)).rows == expected
    assert [p.name for p in cache.iterdir()] == [f"{cache_key(str(snapshot))[:16]}-v1.duckdb"]

    keygen = shutil.which("age-keygen")
    if keygen is None:
        pytest.skip("age-keygen is not installed (apt-get install age)")
    key = tmp_path / "key.txt"
    subprocess.run([keygen, "-o", str(key)], check=True, capture_output=True)
    public = subprocess.run([keygen, "-y", str(key)], check=True, capture_output=True, text=True).stdout
    public = public.strip()
    sealed = tmp_path / "app.json.zst.age"
    sqlsnap.export(f"sqlite:///{db}", str(sealed), encrypt_to=[public])
    with pytest.raises(UsageError):
        query(str(sealed), sql)  # no identity: refused, nothing cached
    assert not list(tmp_path.glob(".app.json.zst.age.*"))
    assert query(str(sealed), sql, identities=[str(key)]).rows == expected
    assert len(list(tmp_path.glob(".app.json.zst.age.*.duckdb"))) == 1


def test_a_damaged_cache_file_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(sqlsnap.NotFoundError, match="delete it and run the query again") as err:
        SafeDatabase(str(bad))
    assert "\n" not in str(err.value)


def test_restore_into_duckdb(demo_snapshot, tmp_path: Path) -> None:
    """``sqlsnap restore SNAPSHOT duckdb:///FILE``: the whole snapshot in a new file; an
    existing file is refused without --replace; a failed --replace leaves the old file."""
    _, snapshot = demo_snapshot
    target = tmp_path / "app.duckdb"
    done = subprocess.run([SQLSNAP, "restore", str(snapshot), f"duckdb:///{target}", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with sqlsnap.open_snapshot(str(snapshot)) as snap:
        meta = snap.metadata
    with duckdb.connect(str(target), read_only=True) as conn:
        for name, entry in meta["tables"].items():
            assert conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == entry["rows"]
    again = subprocess.run([SQLSNAP, "restore", str(snapshot), f"duckdb:///{target}"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 6 and "already exists; give --replace" in again.stderr
    before = target.read_bytes()
    damaged = tmp_path / "damaged.json"
    damaged.write_bytes(b'{"metadata": {"format": "sqlsnap"')
    failed = subprocess.run([SQLSNAP, "restore", str(damaged), f"duckdb:///{target}", "--replace"],
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 7 and failed.stderr.count("Error:") == 1
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "app.duckdb", "damaged.json"]
    partial = subprocess.run([SQLSNAP, "restore", str(snapshot), f"duckdb:///{target}", "--tables",
                              "users"], capture_output=True, text=True, timeout=60)
    assert partial.returncode == 2 and "loads the whole snapshot" in partial.stderr
