"""Export behaviour on all three dialects: names, table selection, metadata, order, output
names, compression, layouts and the command line's outputs."""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import os
import re
import subprocess
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import xxhash
import zstandard

import sqlsnap
from sqlsnap.errors import NotFoundError, UsageError
from tests.conftest import SQLSNAP, execute_script


def dialect(url: str) -> str:
    return url.split(":", 1)[0]


def q(url: str, name: str) -> str:
    """Quote an identifier for the dialect of ``url``."""
    if dialect(url) == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def text_type(url: str) -> str:
    return "VARCHAR(100)" if dialect(url) == "mysql" else "TEXT"


def export_doc(url: str, path: Path, **kw: Any) -> tuple[bytes, Any, sqlsnap.ExportResult]:
    result = sqlsnap.export(url, str(path), **kw)
    raw = path.read_bytes()
    return raw, json.loads(raw), result


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([SQLSNAP, *args], capture_output=True, timeout=timeout)


def data_part(raw: bytes) -> bytes:
    return raw[raw.index(b'\n"data": {'):]


# -- names ---------------------------------------------------------------------------------


WEIRD_TABLES = ["select", "my table", "naïve_日本", 'we"ird', "it's", "Order Details"]


def test_identifiers_with_quotes_spaces_unicode_and_reserved_words(any_url: str, tmp_path: Path) -> None:
    t = text_type(any_url)
    cols = ["from", "a b", "é", 'q"t', "order", "it's"]
    stmts = []
    for i, table in enumerate(WEIRD_TABLES):
        col_defs = ", ".join(f"{q(any_url, c)} {t}" for c in cols)
        stmts.append(f"CREATE TABLE {q(any_url, table)} ({q(any_url, 'key id')} INTEGER PRIMARY KEY, "
                     f"{col_defs})")
        values = ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}-{i}'" for c in cols)
        stmts.append(f"INSERT INTO {q(any_url, table)} VALUES ({i}, {values})")
    stmts.append(f"CREATE TABLE {q(any_url, 'child of select')} ({q(any_url, 'ref id')} INTEGER, "
                 f"FOREIGN KEY ({q(any_url, 'ref id')}) REFERENCES {q(any_url, 'select')}"
                 f"({q(any_url, 'key id')}))")
    stmts.append(f"INSERT INTO {q(any_url, 'child of select')} VALUES (0)")
    execute_script(any_url, stmts)

    _, doc, _ = export_doc(any_url, tmp_path / "out.json")
    assert sorted(doc["data"]) == sorted([*WEIRD_TABLES, "child of select"])
    for i, table in enumerate(WEIRD_TABLES):
        assert doc["data"][table] == [{"key id": i, **{c: f"{c}-{i}" for c in cols}}], table
        meta = doc["metadata"]["tables"][table]
        assert [c["name"] for c in meta["columns"]] == ["key id", *cols]
        assert meta["primary_key"] == ["key id"]
    assert doc["metadata"]["tables"]["child of select"]["foreign_keys"] == [
        {"columns": ["ref id"], "references": {"table": "select", "columns": ["key id"]}}]


def test_views_are_not_exported(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, [
        "CREATE TABLE base (id INTEGER PRIMARY KEY)",
        "INSERT INTO base VALUES (1), (2)",
        "CREATE VIEW base_view AS SELECT id FROM base WHERE id > 1",
    ])
    if dialect(any_url) == "postgresql":
        execute_script(any_url, ["CREATE MATERIALIZED VIEW base_mat AS SELECT id FROM base"])
    _, doc, _ = export_doc(any_url, tmp_path / "out.json")
    assert list(doc["data"]) == ["base"]
    assert list(doc["metadata"]["tables"]) == ["base"]
    assert doc["data"]["base"] == [{"id": 1}, {"id": 2}]


def test_generated_columns_are_exported(any_url: str, tmp_path: Path) -> None:
    virtual = "STORED" if dialect(any_url) == "postgresql" else "VIRTUAL"  # PostgreSQL 15: STORED only
    execute_script(any_url, [
        "CREATE TABLE g (a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) " + virtual + ","
        " c INTEGER GENERATED ALWAYS AS (a + 1) STORED)",
        "INSERT INTO g (a) VALUES (1), (5)",
    ])
    _, doc, _ = export_doc(any_url, tmp_path / "out.json")
    assert doc["data"]["g"] == [{"a": 1, "b": 2, "c": 2}, {"a": 5, "b": 10, "c": 6}]
    assert [c["name"] for c in doc["metadata"]["tables"]["g"]["columns"]] == ["a", "b", "c"]


def test_empty_tables_are_empty_arrays(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, [
        "CREATE TABLE empty_a (id INTEGER PRIMARY KEY)",
        f"CREATE TABLE empty_b (id INTEGER, name {text_type(any_url)})",
        "CREATE TABLE full_c (id INTEGER)",
        "INSERT INTO full_c VALUES (1)",
    ])
    raw, doc, result = export_doc(any_url, tmp_path / "out.json")
    assert doc["data"] == {"empty_a": [], "empty_b": [], "full_c": [{"id": 1}]}
    assert doc["metadata"]["tables"]["empty_a"]["rows"] == 0
    assert doc["checksums"]["xxh128"]["empty_a"] == xxhash.xxh3_128(b"").hexdigest()
    assert b'"empty_a": []' in raw
    assert result.tables["empty_b"].rows == 0


def test_one_megabyte_text_value(any_url: str, tmp_path: Path) -> None:
    big = ("abc \"quoted\" \\ 😀 é\n\t" * 60_000)[:1_000_000]
    column_type = "LONGTEXT" if dialect(any_url) == "mysql" else "TEXT"
    execute_script(any_url, [f"CREATE TABLE big (id INTEGER, t {column_type})"])
    placeholder = "?" if dialect(any_url) == "sqlite" else "%s"
    if dialect(any_url) == "sqlite":
        import sqlite3

        conn = sqlite3.connect(any_url.split("///", 1)[1])
        with conn:
            conn.execute(f"INSERT INTO big VALUES (1, {placeholder}), (2, 'small')", (big,))
        conn.close()
    elif dialect(any_url) == "postgresql":
        import psycopg

        with psycopg.connect(any_url, autocommit=True) as conn:
            conn.execute("INSERT INTO big VALUES (1, %s), (2, 'small')", (big,))
    else:
        from tests.conftest import mysql_connect

        conn = mysql_connect(any_url)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO big VALUES (1, %s), (2, 'small')", (big,))
        conn.close()
    raw, doc, _ = export_doc(any_url, tmp_path / "out.json")
    assert sorted(doc["data"]["big"], key=lambda r: r["id"]) == [{"id": 1, "t": big}, {"id": 2, "t": "small"}]
    # Still one line a row: '"data": {', '"big": [', two rows, ']', '},', the checksums, '}'
    # and the final newline.
    assert data_part(raw).count(b"\n") == 9


# -- table selection ---------------------------------------------------------------------------


SELECTION_TABLES = ["app_users", "app_orders", "debug_log", "debug_trace", "other"]


def test_tables_and_exclude_tables_globs(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, [f"CREATE TABLE {t} (id INTEGER)" for t in SELECTION_TABLES]
                   + [f"INSERT INTO {t} VALUES (1)" for t in SELECTION_TABLES])
    _, doc, _ = export_doc(any_url, tmp_path / "a.json", tables=["app_*", "debug_*"],
                           exclude_tables=["*_trace"])
    assert sorted(doc["data"]) == ["app_orders", "app_users", "debug_log"]
    assert doc["metadata"]["excluded_tables"] == ["debug_trace"]
    assert doc["metadata"]["total_tables"] == 3 and doc["metadata"]["total_rows"] == 3

    _, doc, _ = export_doc(any_url, tmp_path / "b.json", exclude_tables=["debug_*", "oth?r"])
    assert sorted(doc["data"]) == ["app_orders", "app_users"]
    assert doc["metadata"]["excluded_tables"] == ["debug_log", "debug_trace", "other"]

    _, doc, _ = export_doc(any_url, tmp_path / "c.json", tables=["[ao]*s"])
    assert sorted(doc["data"]) == ["app_orders", "app_users"]

    with pytest.raises(NotFoundError, match="nope_"):
        sqlsnap.export(any_url, str(tmp_path / "d.json"), tables=["app_users", "nope_*"])
    assert not (tmp_path / "d.json").exists()


def test_cli_table_globs(sqlite_url: str, tmp_path: Path) -> None:
    execute_script(sqlite_url, [f"CREATE TABLE {t} (id INTEGER)" for t in SELECTION_TABLES])
    out = tmp_path / "out.json"
    proc = run_cli("export", sqlite_url, "-q", "-o", str(out), "--tables", "app_*", "--tables", "debug_*",
                   "--exclude-tables", "*_log")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_bytes())
    assert sorted(doc["data"]) == ["app_orders", "app_users", "debug_trace"]
    assert doc["metadata"]["excluded_tables"] == ["debug_log"]


def test_cli_table_globs_separated_by_commas(sqlite_url: str, tmp_path: Path) -> None:
    """``--tables incidents,participants`` (the form docs/segments.md uses) is two globs; a comma
    in a name is matched with ``[,]``."""
    execute_script(sqlite_url, [f"CREATE TABLE {t} (id INTEGER)" for t in SELECTION_TABLES]
                   + ['CREATE TABLE "x,y" (id INTEGER)'])
    out = tmp_path / "out.json"
    proc = run_cli("export", sqlite_url, "-q", "-o", str(out), "--tables", "app_users, debug_*",
                   "--exclude-tables", "*_log,nothing")
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(out.read_bytes())["data"]) == ["app_users", "debug_trace"]
    proc = run_cli("export", sqlite_url, "-q", "-o", str(tmp_path / "comma.json"), "--tables", "x[,]y")
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads((tmp_path / "comma.json").read_bytes())["data"]) == ["x,y"]


# -- PostgreSQL specifics ----------------------------------------------------------------------------


def test_postgresql_partitioned_table_is_exported_once_as_its_parent(pg_url: str, tmp_path: Path) -> None:
    execute_script(pg_url, [
        "CREATE TABLE measurements (id int, region text, v numeric) PARTITION BY LIST (region)",
        "CREATE TABLE m_eu PARTITION OF measurements FOR VALUES IN ('eu')",
        "CREATE TABLE m_us PARTITION OF measurements FOR VALUES IN ('us') PARTITION BY RANGE (id)",
        "CREATE TABLE m_us_low PARTITION OF m_us FOR VALUES FROM (0) TO (100)",
        "CREATE TABLE m_us_high PARTITION OF m_us FOR VALUES FROM (100) TO (1000)",
        "CREATE TABLE m_other PARTITION OF measurements DEFAULT",
        "INSERT INTO measurements SELECT g, (ARRAY['eu','us','asia'])[g % 3 + 1], g / 2.0"
        " FROM generate_series(1, 300) g",
        # Old-style inheritance: both tables are real tables, each exported with its own rows.
        "CREATE TABLE inh_parent (id int)",
        "CREATE TABLE inh_child (extra text) INHERITS (inh_parent)",
        "INSERT INTO inh_parent VALUES (1)",
        "INSERT INTO inh_child VALUES (2, 'x')",
    ])
    _, doc, _ = export_doc(pg_url, tmp_path / "out.json")
    assert sorted(doc["data"]) == ["inh_child", "inh_parent", "measurements"]
    assert sorted(r["id"] for r in doc["data"]["measurements"]) == list(range(1, 301))
    assert doc["metadata"]["tables"]["measurements"]["rows"] == 300
    assert doc["metadata"]["total_rows"] == 302
    assert doc["data"]["inh_parent"] == [{"id": 1}]
    assert doc["data"]["inh_child"] == [{"id": 2, "extra": "x"}]


def test_postgresql_schema_option(pg_url: str, tmp_path: Path) -> None:
    execute_script(pg_url, [
        "CREATE SCHEMA audit",
        "CREATE TABLE audit.events (id int PRIMARY KEY, what text)",
        "INSERT INTO audit.events VALUES (1, 'login'), (2, 'logout')",
        "CREATE TABLE audit.notes (id int, event_id int REFERENCES audit.events)",
        "CREATE TABLE public.users (id int PRIMARY KEY, last_event int REFERENCES audit.events)",
        "INSERT INTO public.users VALUES (7, 2)",
        'CREATE SCHEMA "Other Schema"',
        'CREATE TABLE "Other Schema"."T" (x int)',
        'INSERT INTO "Other Schema"."T" VALUES (5)',
    ])
    # Default: public only.
    _, doc, _ = export_doc(pg_url, tmp_path / "a.json")
    assert list(doc["data"]) == ["users"]
    assert doc["metadata"]["tables"]["users"]["foreign_keys"] == [
        {"columns": ["last_event"], "references": {"table": "audit.events", "columns": ["id"]}}]

    # One other schema: its tables by their bare names.
    _, doc, _ = export_doc(pg_url, tmp_path / "b.json", schemas=["audit"])
    assert sorted(doc["data"]) == ["events", "notes"]
    assert doc["data"]["events"] == [{"id": 1, "what": "login"}, {"id": 2, "what": "logout"}]
    assert doc["metadata"]["tables"]["notes"]["foreign_keys"][0]["references"]["table"] == "events"

    # Several schemas: public bare, the others as schema.table.
    _, doc, _ = export_doc(pg_url, tmp_path / "c.json", schemas=["audit", "public", "Other Schema"])
    assert sorted(doc["data"]) == ["Other Schema.T", "audit.events", "audit.notes", "users"]
    assert doc["data"]["Other Schema.T"] == [{"x": 5}]
    assert doc["metadata"]["tables"]["users"]["foreign_keys"][0]["references"]["table"] == "audit.events"
    assert doc["metadata"]["tables"]["audit.notes"]["foreign_keys"][0]["references"]["table"] == \
        "audit.events"
    order = list(doc["data"])
    assert order.index("audit.events") < order.index("users")

    with pytest.raises(NotFoundError, match="nope"):
        sqlsnap.export(pg_url, str(tmp_path / "d.json"), schemas=["nope"])
    proc = run_cli("export", pg_url, "-q", "--schema", "audit", "-o", str(tmp_path / "e.json"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads((tmp_path / "e.json").read_bytes())["data"]) == ["events", "notes"]


def test_postgresql_schema_names_never_collide(pg_url: str, tmp_path: Path) -> None:
    execute_script(pg_url, [
        "CREATE SCHEMA audit",
        "CREATE TABLE audit.events (id int)",
        "INSERT INTO audit.events VALUES (1)",
        'CREATE TABLE public."audit.events" (id int)',
        'INSERT INTO public."audit.events" VALUES (2), (3)',
        'CREATE SCHEMA "my.app"',
        'CREATE TABLE "my.app".users (id int PRIMARY KEY)',
        'CREATE TABLE public.refs (u int REFERENCES "my.app".users)',
    ])
    # Refusing the ambiguous names would be as good as keeping them apart; sqlsnap keeps them
    # apart, by quoting names that hold a dot as SQL quotes them (docs/format.md, "Table names").
    _, doc, _ = export_doc(pg_url, tmp_path / "out.json", schemas=["public", "audit"])
    assert doc["metadata"]["total_rows"] == 3
    assert sorted(r["id"] for rows in doc["data"].values() for r in rows) == [1, 2, 3]
    assert doc["data"] == {"audit.events": [{"id": 1}], '"audit.events"': [{"id": 2}, {"id": 3}],
                           "refs": []}
    assert {name: t["rows"] for name, t in doc["metadata"]["tables"].items()} == \
        {"audit.events": 1, '"audit.events"': 2, "refs": 0}
    assert doc["metadata"]["tables"]["refs"]["foreign_keys"] == [
        {"columns": ["u"], "references": {"table": '"my.app".users', "columns": ["id"]}}]


def test_schema_option_is_postgresql_only(sqlite_url: str, tmp_path: Path) -> None:
    execute_script(sqlite_url, ["CREATE TABLE t (id INTEGER)"])
    with pytest.raises(UsageError, match="--schema"):
        sqlsnap.export(sqlite_url, str(tmp_path / "out.json"), schemas=["main"])


# -- metadata ---------------------------------------------------------------------------------------


def keys_schema(url: str) -> list[str]:
    t = text_type(url)
    return [
        f"CREATE TABLE companies (id INTEGER PRIMARY KEY, name {t} NOT NULL)",
        f"CREATE TABLE sites (company_id INTEGER NOT NULL, code VARCHAR(10) NOT NULL, label {t},"
        " PRIMARY KEY (company_id, code),"
        " FOREIGN KEY (company_id) REFERENCES companies (id))",
        "CREATE TABLE visits (id INTEGER PRIMARY KEY, company_id INTEGER, site_code VARCHAR(10),"
        " FOREIGN KEY (company_id, site_code) REFERENCES sites (company_id, code))",
        f"CREATE TABLE employees (id INTEGER PRIMARY KEY, manager_id INTEGER, name {t},"
        " FOREIGN KEY (manager_id) REFERENCES employees (id))",
        "INSERT INTO companies VALUES (1, 'Acme'), (2, 'Globex')",
        "INSERT INTO sites VALUES (1, 'A', 'main'), (1, 'B', NULL), (2, 'A', 'hq')",
        "INSERT INTO visits VALUES (1, 1, 'A'), (2, 1, 'B'), (3, 2, 'A'), (4, NULL, NULL)",
        "INSERT INTO employees VALUES (1, NULL, 'boss'), (2, 1, 'ana'), (3, 2, 'bo')",
    ]


EXPECTED_TYPES = {
    "sqlite": {"id": "INTEGER", "name": "TEXT", "code": "VARCHAR(10)"},
    "postgresql": {"id": "integer", "name": "text", "code": "character varying(10)"},
    "mysql": {"id": "int(11)", "name": "varchar(100)", "code": "varchar(10)"},
}


def test_metadata_keys_counts_and_columns(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, keys_schema(any_url))
    _, doc, result = export_doc(any_url, tmp_path / "out.json", exported_by="ana@example.com",
                                environment="staging")
    meta = doc["metadata"]
    tables = meta["tables"]
    assert {name: t["rows"] for name, t in tables.items()} == \
        {"companies": 2, "sites": 3, "visits": 4, "employees": 3}
    assert {name: len(rows) for name, rows in doc["data"].items()} == \
        {"companies": 2, "sites": 3, "visits": 4, "employees": 3}
    assert meta["total_rows"] == 12 and meta["total_tables"] == 4
    assert result.total_rows == 12

    types = EXPECTED_TYPES[dialect(any_url)]
    assert tables["companies"]["columns"] == [
        {"name": "id", "type": types["id"], "nullable": False},
        {"name": "name", "type": types["name"], "nullable": False},
    ]
    sites_cols = tables["sites"]["columns"]
    assert [(c["name"], c["nullable"]) for c in sites_cols] == \
        [("company_id", False), ("code", False), ("label", True)]
    assert sites_cols[1]["type"] == types["code"]

    assert tables["companies"]["primary_key"] == ["id"]
    assert tables["sites"]["primary_key"] == ["company_id", "code"]
    assert tables["sites"]["foreign_keys"] == [
        {"columns": ["company_id"], "references": {"table": "companies", "columns": ["id"]}}]
    assert tables["visits"]["foreign_keys"] == [
        {"columns": ["company_id", "site_code"],
         "references": {"table": "sites", "columns": ["company_id", "code"]}}]
    assert tables["employees"]["foreign_keys"] == [
        {"columns": ["manager_id"], "references": {"table": "employees", "columns": ["id"]}}]
    assert all(t["excluded_columns"] == [] for t in tables.values())

    assert meta["format"] == "sqlsnap" and meta["version"] == 1
    assert meta["generator"] == f"sqlsnap {sqlsnap.__version__}"
    assert meta["export_type"] == "full" and meta["layout"] == "json"
    assert meta["exported_by"] == "ana@example.com"
    assert meta["environment"] == "staging"
    assert meta["excluded_tables"] == [] and meta["filters"] == {}
    exported_at = datetime.strptime(meta["exported_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - exported_at) < timedelta(minutes=2)

    source = meta["source"]
    assert set(source) == {"dialect", "server_version", "database", "host"}
    database = any_url.rsplit("/", 1)[1]
    if dialect(any_url) == "sqlite":
        assert source["dialect"] == "sqlite" and source["database"] == "source.db"
    elif dialect(any_url) == "postgresql":
        import psycopg

        with psycopg.connect(any_url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        assert source == {"dialect": "postgresql", "server_version": version, "database": database,
                          "host": "127.0.0.1"}
    else:
        assert source["dialect"] == "mariadb" and source["database"] == database
        assert source["host"] == "127.0.0.1" and re.fullmatch(r"\d+\.\d+\.\d+", source["server_version"])


def test_metadata_defaults(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    execute_script(sqlite_url, ["CREATE TABLE t (id INTEGER)"])
    _, doc, _ = export_doc(sqlite_url, tmp_path / "a.json")
    assert doc["metadata"]["exported_by"] == getpass.getuser()
    assert doc["metadata"]["environment"] is None
    # The CLI: --by, and the environment from SQLSNAP_ENVIRONMENT.
    out = tmp_path / "b.json"
    env = {**os.environ, "SQLSNAP_ENVIRONMENT": "production"}
    proc = subprocess.run([SQLSNAP, "export", sqlite_url, "-q", "-o", str(out), "--by", "ops-bot"],
                          capture_output=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(out.read_bytes())["metadata"]
    assert (meta["exported_by"], meta["environment"]) == ("ops-bot", "production")


def test_password_never_appears(pg_url: str, tmp_path: Path) -> None:
    secret = "s3cretpw"
    url = pg_url.replace("postgres@", f"postgres:{secret}@", 1)
    execute_script(pg_url, ["CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)"])
    out = tmp_path / "out.json"
    result = sqlsnap.export(url, str(out))
    assert secret.encode() not in out.read_bytes()
    assert secret not in json.dumps(result.summary()) and secret not in repr(result)
    assert json.loads(out.read_bytes())["data"]["t"] == [{"id": 1}]

    for args in (["-o", str(tmp_path / "cli.json")], ["-o", str(tmp_path / "cli2.json"), "--json"],
                 ["--format", "jsonl", "-o", str(tmp_path / "folder")], ["-o", "-"],
                 ["-o", str(tmp_path / "x.json"), "--tables", "nope"]):
        proc = run_cli("export", url, *args)
        assert secret.encode() not in proc.stdout + proc.stderr, args
    assert proc.returncode == 4  # the last one failed, and still did not print the password
    for path in (tmp_path / "cli.json", tmp_path / "cli2.json", tmp_path / "folder" / "metadata.json"):
        assert secret.encode() not in path.read_bytes()


def test_tables_in_foreign_key_order(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, [
        "CREATE TABLE z_parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE m_mid (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES z_parent (id))",
        "CREATE TABLE a_child (id INTEGER PRIMARY KEY, mid_id INTEGER REFERENCES m_mid (id),"
        " parent_id INTEGER REFERENCES z_parent (id))",
        "CREATE TABLE b_self (id INTEGER PRIMARY KEY, up INTEGER REFERENCES b_self (id))",
        "CREATE TABLE c_alone (id INTEGER)",
    ])
    if dialect(any_url) == "mysql":  # MySQL ignores column-level REFERENCES: use table constraints
        execute_script(any_url, [
            "ALTER TABLE m_mid ADD FOREIGN KEY (parent_id) REFERENCES z_parent (id)",
            "ALTER TABLE a_child ADD FOREIGN KEY (mid_id) REFERENCES m_mid (id),"
            " ADD FOREIGN KEY (parent_id) REFERENCES z_parent (id)",
            "ALTER TABLE b_self ADD FOREIGN KEY (up) REFERENCES b_self (id)",
        ])
    _, doc, _ = export_doc(any_url, tmp_path / "out.json")
    order = list(doc["data"])
    assert sorted(order) == ["a_child", "b_self", "c_alone", "m_mid", "z_parent"]
    assert order.index("z_parent") < order.index("m_mid") < order.index("a_child")
    assert list(doc["metadata"]["tables"]) == order


class FailingProgress:
    def start(self, tables: Any) -> None:
        pass

    def advance(self, table: str, rows: int, nbytes: int) -> None:
        raise RuntimeError("boom")

    def table_done(self, table: str, rows: int, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        pass


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_failed_export_closes_its_files(sqlite_url: str, tmp_path: Path, fmt: str) -> None:
    execute_script(sqlite_url, ["CREATE TABLE t (id INTEGER)", "INSERT INTO t VALUES (1)"])
    out = tmp_path / "out"
    out.mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="boom"):
            sqlsnap.export(sqlite_url, str(out / "x"), format=fmt, progress=FailingProgress())
        gc.collect()
    assert os.listdir(out) == []  # nothing left behind...
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []  # ...and nothing left open


# -- destinations -----------------------------------------------------------------------------------


def test_default_output_name(any_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    execute_script(any_url, ["CREATE TABLE t (id INTEGER)", "INSERT INTO t VALUES (1)"])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    stem = "source" if dialect(any_url) == "sqlite" else any_url.rsplit("/", 1)[1]
    result = sqlsnap.export(any_url)
    pattern = re.escape(stem) + r"-export-(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ)\.json"
    match = re.fullmatch(pattern, result.path)
    assert match, result.path
    # The file, perhaps its checksum file, and nothing else (no temp or spool files).
    assert set(os.listdir(work)) - {result.path + ".sha256"} == {result.path}
    doc = json.loads((work / result.path).read_bytes())
    stamp = match.group(1)
    assert doc["metadata"]["exported_at"] == stamp[:13] + ":" + stamp[14:16] + ":" + stamp[17:]
    assert doc["data"]["t"] == [{"id": 1}]

    zst = sqlsnap.export(any_url, compress="zstd")
    assert re.fullmatch(re.escape(stem) + r"-export-[0-9T-]+Z\.json\.zst", zst.path), zst.path
    folder = sqlsnap.export(any_url, format="jsonl")
    assert re.fullmatch(re.escape(stem) + r"-export-[0-9T-]+Z", folder.path), folder.path
    assert (work / folder.path / "metadata.json").is_file()


def test_compression_from_suffix_and_option(sqlite_url: str, tmp_path: Path) -> None:
    execute_script(sqlite_url, ["CREATE TABLE t (id INTEGER, v TEXT)"]
                   + [f"INSERT INTO t VALUES ({i}, '{'x' * (i % 50)}')" for i in range(500)])
    plain_raw, _, _ = export_doc(sqlite_url, tmp_path / "plain.json")
    expected = data_part(plain_raw)

    def read(path: Path) -> tuple[bytes, bytes]:
        raw = path.read_bytes()
        if raw.startswith(b"\x28\xb5\x2f\xfd"):
            return b"zstd", zstandard.ZstdDecompressor().stream_reader(raw).read()
        if raw.startswith(b"\x1f\x8b"):
            return b"gzip", gzip.decompress(raw)
        return b"none", raw

    cases = [("a.json.zst", None, b"zstd"), ("b.json.gz", None, b"gzip"), ("c.json", "gzip", b"gzip"),
             ("d.json", "zstd", b"zstd"), ("f.json", None, b"none")]
    # A suffix that says another codec than --compress is refused (tests/test_faults_friction.py).
    with pytest.raises(sqlsnap.UsageError, match="ends in .zst but --compress none"):
        sqlsnap.export(sqlite_url, str(tmp_path / "e.json.zst"), compress="none")
    for name, compress, codec in cases:
        result = sqlsnap.export(sqlite_url, str(tmp_path / name), compress=compress)
        got_codec, text = read(tmp_path / name)
        assert got_codec == codec, name
        assert data_part(text) == expected, name
        assert json.loads(text)["metadata"]["total_rows"] == 500
        assert result.compression == codec.decode()
        assert result.sha256 == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest(), name

    proc = run_cli("export", sqlite_url, "-q", "--compress", "gzip", "-o", str(tmp_path / "g.out"))
    assert proc.returncode == 0, proc.stderr
    assert read(tmp_path / "g.out")[0] == b"gzip"
    assert data_part(read(tmp_path / "g.out")[1]) == expected


def test_jsonl_folder(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, keys_schema(any_url) + ["CREATE TABLE empty_t (id INTEGER)"])
    _, doc, _ = export_doc(any_url, tmp_path / "doc.json")
    folder = tmp_path / "out"
    result = sqlsnap.export(any_url, str(folder), format="jsonl")
    assert result.format == "jsonl" and result.path == str(folder)
    meta = json.loads((folder / "metadata.json").read_bytes())
    assert meta["layout"] == "jsonl"
    assert sorted(os.listdir(folder)) == sorted(
        ["metadata.json", "companies.jsonl", "sites.jsonl", "visits.jsonl", "employees.jsonl",
         "empty_t.jsonl"])
    for name, table in meta["tables"].items():
        assert table["file"] == f"{name}.jsonl"
        raw = (folder / table["file"]).read_bytes()
        assert xxhash.xxh3_128(raw).hexdigest() == table["xxh128"] == doc["checksums"]["xxh128"][name]
        rows = [json.loads(line) for line in raw.splitlines()]
        assert rows == doc["data"][name], name
        assert len(rows) == table["rows"]
    assert (folder / "empty_t.jsonl").read_bytes() == b""
    assert meta["total_rows"] == doc["metadata"]["total_rows"] == 12
    assert list(meta["tables"]) == list(doc["metadata"]["tables"])

    # With compression, each table file is compressed; and an existing folder is refused.
    zfolder = tmp_path / "zout"
    sqlsnap.export(any_url, str(zfolder), format="jsonl", compress="zstd")
    zmeta = json.loads((zfolder / "metadata.json").read_bytes())
    assert zmeta["tables"]["companies"]["file"] == "companies.jsonl.zst"
    text = zstandard.ZstdDecompressor().stream_reader((zfolder / "companies.jsonl.zst").read_bytes()).read()
    assert text == (folder / "companies.jsonl").read_bytes()
    with pytest.raises(sqlsnap.OutputError, match="exists"):
        sqlsnap.export(any_url, str(folder), format="jsonl")


def test_jsonl_file_names_for_awkward_table_names(pg_url: str, tmp_path: Path) -> None:
    names = ["a/b", "a_b", "Users", "users", ".hidden", "metadata.json"]
    execute_script(pg_url, [f'CREATE TABLE "{n}" (id int)' for n in names]
                   + [f"""INSERT INTO "{n}" VALUES ({i})""" for i, n in enumerate(names)])
    folder = tmp_path / "out"
    sqlsnap.export(pg_url, str(folder), format="jsonl")
    meta = json.loads((folder / "metadata.json").read_bytes())
    files = [meta["tables"][n]["file"] for n in names]
    assert len({f.lower() for f in files}) == len(names)  # distinct, even case-insensitively
    assert all("/" not in f and not f.startswith(".") and f != "metadata.json" for f in files)
    assert sorted(os.listdir(folder)) == sorted([*files, "metadata.json"])
    for i, name in enumerate(names):
        assert (folder / meta["tables"][name]["file"]).read_bytes() == f'{{"id":{i}}}\n'.encode(), name


def test_stdout_output(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, keys_schema(any_url))
    raw, _, _ = export_doc(any_url, tmp_path / "file.json")
    proc = run_cli("export", any_url, "-o", "-")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["metadata"]["total_rows"] == 12
    assert data_part(proc.stdout) == data_part(raw)
    assert b'"data"' not in proc.stderr
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no spool left behind


def test_json_summary(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, keys_schema(any_url))
    out = tmp_path / "out.json.gz"
    proc = run_cli("export", any_url, "--json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    raw = out.read_bytes()
    assert summary["path"] == str(out)
    assert summary["format"] == "json" and summary["compression"] == "gzip"
    assert summary["bytes"] == len(raw)
    assert summary["sha256"] == hashlib.sha256(raw).hexdigest()
    assert summary["tables"] == 4 and summary["rows"] == 12
    assert summary["rows_per_table"] == {"companies": 2, "sites": 3, "visits": 4, "employees": 3}
    assert summary["source"]["dialect"] in ("sqlite", "postgresql", "mysql", "mariadb")
    assert summary["seconds"] >= 0
    # --json and -o - both want stdout.
    proc = run_cli("export", any_url, "--json", "-o", "-")
    assert proc.returncode == 2
    assert proc.stdout == b""
