"""One consistent snapshot: rows committed by other sessions while an export runs are not in
it, rows they delete still are; and an export never writes to its source.

Deterministic by construction: a progress object performs the concurrent changes (in its own
connection, committed) either in ``start()`` (after the snapshot, before any reader opens)
or on the first ``advance()``; every ``advance()`` waits for the changes, so no table with
rows can finish before they are committed. Two big tables (several chunks each) keep both
PostgreSQL readers busy until then; the small tables are read afterwards.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import sqlsnap
from tests.conftest import execute_script, mysql_connect, pg_connect

BIG_ROWS = 15_000  # about 3.5 MB a table: several 1 MiB chunks


def setup_statements(url: str) -> list[str]:
    text = "VARCHAR(250)" if url.startswith("mysql") else "TEXT"
    stmts = [
        f"CREATE TABLE a_big1 (id INTEGER PRIMARY KEY, t {text})",
        f"CREATE TABLE a_big2 (id INTEGER PRIMARY KEY, t {text})",
        f"CREATE TABLE s_ins (id INTEGER PRIMARY KEY, v {text})",
        f"CREATE TABLE s_del (id INTEGER PRIMARY KEY, v {text})",
        f"CREATE TABLE s_upd (id INTEGER PRIMARY KEY, v {text})",
        "INSERT INTO s_ins VALUES (1, 'one'), (2, 'two')",
        "INSERT INTO s_del VALUES (1, 'keep'), (2, 'gone later'), (3, 'gone later too')",
        "INSERT INTO s_upd VALUES (1, 'before'), (2, 'before')",
    ]
    if url.startswith("postgresql"):
        stmts += [f"INSERT INTO {t} SELECT g, repeat('x', 200) || g FROM generate_series(1, {BIG_ROWS}) g"
                  for t in ("a_big1", "a_big2")]
        stmts.append("ANALYZE")
    else:
        stmts += [
            "SET SESSION max_recursive_iterations = 1000000",
            "CREATE TABLE seq (n INTEGER PRIMARY KEY)",
            "INSERT INTO seq WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < "
            f"{BIG_ROWS}) SELECT n FROM s",
            "INSERT INTO a_big1 SELECT n, CONCAT(REPEAT('x', 200), n) FROM seq",
            "INSERT INTO a_big2 SELECT n, CONCAT(REPEAT('x', 200), n) FROM seq",
            "DROP TABLE seq",
        ]
    return stmts


CHANGES = [
    "INSERT INTO s_ins VALUES (3, 'inserted during the export'), (4, 'also')",
    "DELETE FROM s_del WHERE id >= 2",
    "UPDATE s_upd SET v = 'after'",
    "INSERT INTO a_big2 VALUES (999999, 'late')",
    f"DELETE FROM a_big1 WHERE id > {BIG_ROWS - 100}",
    "UPDATE a_big1 SET t = 'changed' WHERE id = 1",
]
TABLES = ["a_big1", "a_big2", "s_ins", "s_del", "s_upd"]


def read_all(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows through the plain driver, sorted by id."""
    if url.startswith("postgresql"):
        with pg_connect(url) as conn:
            return {t: conn.execute(f"SELECT id, t FROM {t} ORDER BY id").fetchall() if t.startswith("a_")
                    else conn.execute(f"SELECT id, v FROM {t} ORDER BY id").fetchall() for t in TABLES}
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            out = {}
            for t in TABLES:
                cur.execute(f"SELECT * FROM {t} ORDER BY id")
                out[t] = [tuple(r) for r in cur.fetchall()]
            return out
    finally:
        conn.close()


class ChangeDuringExport:
    """A thread-safe progress object that runs ``change`` once, at ``when``."""

    def __init__(self, change: Callable[[], None], when: str, probe: Callable[[], Any] | None = None) -> None:
        self.change = change
        self.when = when
        self.probe = probe
        self.lock = threading.Lock()
        self.done = False
        self.events: list[tuple[str, str]] = []
        self.probed: list[Any] = []

    def _run_once(self, table: str) -> None:
        with self.lock:
            if not self.done:
                self.change()
                self.done = True
                self.events.append(("changed", table))
                if self.probe:
                    self.probed.append(self.probe())

    def start(self, tables: Sequence[Any]) -> None:
        if self.when == "start":
            self._run_once("")

    def advance(self, table: str, rows: int, nbytes: int) -> None:
        self._run_once(table)

    def table_done(self, table: str, rows: int, nbytes: int) -> None:
        with self.lock:
            self.events.append(("done", table))

    def finish(self) -> None:
        pass


def exported_rows(doc: Any, table: str) -> list[tuple[Any, ...]]:
    col = "t" if table.startswith("a_") else "v"
    return sorted((r["id"], r[col]) for r in doc["data"][table])


def check_snapshot(url: str, tmp_path: Path, when: str, probe: Callable[[], Any] | None = None,
                   **kw: Any) -> ChangeDuringExport:
    execute_script(url, setup_statements(url))
    before = read_all(url)
    progress = ChangeDuringExport(lambda: execute_script(url, CHANGES), when, probe)
    out = tmp_path / "out.json"
    sqlsnap.export(url, str(out), progress=progress, **kw)
    after = read_all(url)

    # The changes happened, and before any table was finished.
    assert progress.done
    assert progress.events[0][0] == "changed"
    assert sorted(t for kind, t in progress.events if kind == "done") == sorted(TABLES)
    for t in TABLES:
        assert after[t] != before[t], t

    doc = json.loads(out.read_bytes())
    for t in TABLES:
        assert exported_rows(doc, t) == before[t], t
        assert doc["metadata"]["tables"][t]["rows"] == len(before[t]), t
    assert doc["metadata"]["total_rows"] == sum(len(v) for v in before.values())
    return progress


@pytest.mark.postgresql
@pytest.mark.parametrize("when", ["start", "advance"])
def test_postgresql_parallel_readers_share_one_snapshot(pg_url: str, tmp_path: Path, when: str) -> None:
    name = pg_url.rsplit("/", 1)[1]

    def sqlsnap_backends() -> list[tuple[Any, ...]]:
        with pg_connect(pg_url) as conn:
            return conn.execute(
                "SELECT backend_xid, backend_type FROM pg_stat_activity "
                "WHERE application_name = 'sqlsnap' AND datname = %s", (name,)).fetchall()

    progress = check_snapshot(pg_url, tmp_path, when, probe=sqlsnap_backends, jobs=2)
    if when == "advance":
        # Two readers: the main connection (which holds the locks and the snapshot) and one
        # more, neither of which has a transaction id: none wrote.
        backends = progress.probed[0]
        assert len(backends) == 2
        assert all(xid is None for xid, _ in backends)


@pytest.mark.postgresql
def test_postgresql_single_reader_snapshot(pg_url: str, tmp_path: Path) -> None:
    check_snapshot(pg_url, tmp_path, "advance", jobs=1)


@pytest.mark.postgresql
def test_postgresql_portable_path_snapshot(pg_url: str, tmp_path: Path) -> None:
    check_snapshot(pg_url, tmp_path, "advance", jobs=2, server_json=False)


@pytest.mark.mysql
@pytest.mark.parametrize("when", ["start", "advance"])
def test_mariadb_snapshot(mysql_url: str, tmp_path: Path, when: str) -> None:
    name = mysql_url.rsplit("/", 1)[1]

    def sqlsnap_transactions() -> list[tuple[Any, ...]]:
        conn = mysql_connect(mysql_url)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT t.trx_is_read_only, t.trx_rows_modified FROM information_schema.INNODB_TRX t "
                    "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                    "WHERE p.DB = %s AND p.ID <> CONNECTION_ID()", (name,))
                return cur.fetchall()
        finally:
            conn.close()

    progress = check_snapshot(mysql_url, tmp_path, when, probe=sqlsnap_transactions)
    if when == "advance":
        assert [tuple(r) for r in progress.probed[0]] == [(1, 0)]  # one read-only transaction


# -- an export never writes to its source -------------------------------------------------------


def fingerprint(url: str) -> str:
    """Schema and data of the database, through the plain driver."""
    h = hashlib.sha256()
    if url.startswith("sqlite"):
        import sqlite3

        path = url.split("///", 1)[1]
        h.update(Path(path).read_bytes())
        conn = sqlite3.connect(path)
        h.update(repr(conn.execute("SELECT * FROM sqlite_master ORDER BY name").fetchall()).encode())
        conn.close()
    elif url.startswith("postgresql"):
        with pg_connect(url) as conn:
            h.update(repr(conn.execute(
                "SELECT table_name, column_name, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = 'public' "
                "ORDER BY 1, 2").fetchall()).encode())
            h.update(repr(conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = 'public'::regnamespace ORDER BY 1").fetchall()).encode())
            for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                     "ORDER BY 1").fetchall():
                rows = conn.execute(f'SELECT xmin::text, * FROM "{t}" ORDER BY 2').fetchall()
                h.update(repr(rows).encode())
    else:
        conn = mysql_connect(url)
        name = url.rsplit("/", 1)[1]
        with conn.cursor() as cur:
            cur.execute("SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT "
                        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s ORDER BY 1, 2", (name,))
            h.update(repr(cur.fetchall()).encode())
            cur.execute("SHOW TABLES")
            for (t,) in cur.fetchall():
                cur.execute(f"SHOW CREATE TABLE `{t}`")
                h.update(repr(cur.fetchall()).encode())
                cur.execute(f"SELECT * FROM `{t}` ORDER BY 1")
                h.update(repr(cur.fetchall()).encode())
        conn.close()
    return h.hexdigest()


def test_export_leaves_the_source_unchanged(any_url: str, tmp_path: Path) -> None:
    execute_script(any_url, [
        "CREATE TABLE parent (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL DEFAULT 'x')",
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER,"
        " FOREIGN KEY (parent_id) REFERENCES parent (id))",
        "INSERT INTO parent VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO child VALUES (10, 1), (11, 2)",
    ])
    before = fingerprint(any_url)
    sqlsnap.export(any_url, str(tmp_path / "out.json"))
    sqlsnap.export(any_url, str(tmp_path / "out"), format="jsonl")
    if any_url.startswith("postgresql"):
        sqlsnap.export(any_url, str(tmp_path / "portable.json"), server_json=False)
    assert fingerprint(any_url) == before
    doc = json.loads((tmp_path / "out.json").read_bytes())
    assert doc["metadata"]["total_rows"] == 4  # the export did read the data


def test_sqlite_source_is_opened_read_only(sqlite_url: str, tmp_path: Path) -> None:
    """A writer in another connection succeeds after the export: no lock or journal is left."""
    import sqlite3

    execute_script(sqlite_url, ["CREATE TABLE t (id INTEGER)", "INSERT INTO t VALUES (1)"])
    path = Path(sqlite_url.split("///", 1)[1])
    files_before = sorted(p.name for p in path.parent.iterdir())
    sqlsnap.export(sqlite_url, str(tmp_path / "out.json"))
    files_after = sorted(p.name for p in path.parent.iterdir())
    assert set(files_after) - set(files_before) <= {"out.json", "out.json.sha256"}
    conn = sqlite3.connect(path, timeout=0.1)
    with conn:
        conn.execute("INSERT INTO t VALUES (2)")
    conn.close()
