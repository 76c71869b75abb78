"""The demo database builds correctly on real SQLite, PostgreSQL and MariaDB.

Each server target gets its own uniquely named database, built once per module at scale 1
(about 10k rows, a second or two) and dropped afterwards. Server targets are skipped, with
the reason, only when the server cannot be reached; any other failure is a test failure.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sqlsnap import demo
from tests.conftest import MYSQL_HOST, MYSQL_PORT, MYSQL_USER, pg_database, unavailable, unique_name

#: conftest.py's servers, so one setting points every test at other servers.
MYSQL_SERVER = {"host": MYSQL_HOST, "port": MYSQL_PORT, "user": MYSQL_USER, "password": ""}
CONNECT_TIMEOUT_S = 5
SCALE = 1

#: Relationships the service's data model needs, as (table, column, parent table).
REQUIRED_FOREIGN_KEYS = {
    ("sites", "company_id", "companies"),
    ("users", "company_id", "companies"),
    ("users", "manager_id", "users"),
    ("sessions", "user_id", "users"),
    ("oauth_accounts", "user_id", "users"),
    ("incidents", "company_id", "companies"),
    ("incidents", "site_id", "sites"),
    ("incidents", "reported_by", "users"),
    ("participants", "incident_id", "incidents"),
    ("participants", "user_id", "users"),
    ("incident_narratives", "incident_id", "incidents"),
    ("clarification_questions", "incident_id", "incidents"),
    ("clarification_answers", "question_id", "clarification_questions"),
    ("incident_analyses", "incident_id", "incidents"),
    ("incident_classifications", "incident_id", "incidents"),
    ("ai_request_logs", "incident_id", "incidents"),
    ("ai_request_logs", "prompt_id", "ai_prompts"),
    ("workflow_handoffs", "incident_id", "incidents"),
    ("workflow_handoffs", "from_user_id", "users"),
    ("workflow_handoffs", "to_user_id", "users"),
    ("debug_logs", "company_id", "companies"),
}

#: Ordered dumps compared between builds: a plain table, the biggest text table and the
#: JSON-heavy one, so every generator style is covered.
DUMPS = {
    "users": "SELECT * FROM users ORDER BY id",
    "incident_narratives": "SELECT * FROM incident_narratives ORDER BY id",
    "ai_request_logs": "SELECT * FROM ai_request_logs ORDER BY id",
}
#: Columns whose values have the same Python type on every dialect, to compare across them.
PORTABLE_DUMPS = {
    "users": "SELECT id, company_id, manager_id, email, full_name, password_hash FROM users ORDER BY id",
    "incidents": "SELECT id, reference, title, status, description FROM incidents ORDER BY id",
    "incident_narratives": "SELECT id, incident_id, phase, content FROM incident_narratives ORDER BY id",
}


@dataclass
class Built:
    """A database holding the demo, and how to build it again."""

    dialect: str
    conn: Any
    counts: dict[str, int]
    progress: list[tuple[str, int]] = field(default_factory=list)

    def rebuild(self) -> dict[str, int]:
        return demo.build(self.conn, self.dialect, SCALE)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows as tuples; the read transaction is ended so it holds no snapshot or locks."""
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return [tuple(row) for row in cur.fetchall()]
        finally:
            cur.close()
            self.conn.rollback()

    def scalar(self, sql: str) -> Any:
        return self.query(sql)[0][0]


def _build(dialect: str, conn: Any) -> Built:
    progress: list[tuple[str, int]] = []
    counts = demo.build(conn, dialect, SCALE, progress=lambda table, rows: progress.append((table, rows)))
    return Built(dialect, conn, counts, progress)


@contextmanager
def _sqlite_database(path: Path) -> Iterator[Any]:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA foreign_keys = ON")  # so the load itself is checked too
        yield conn


@contextmanager
def _postgresql_database() -> Iterator[Any]:
    psycopg = pytest.importorskip("psycopg")
    with pg_database() as url, psycopg.connect(url) as conn:
        yield conn


@contextmanager
def _mysql_database(driver_name: str) -> Iterator[Any]:
    driver = pytest.importorskip(driver_name)
    try:
        admin = driver.connect(**MYSQL_SERVER, charset="utf8mb4", connect_timeout=CONNECT_TIMEOUT_S)
    except driver.OperationalError as exc:
        unavailable(f"MariaDB/MySQL not reachable at {MYSQL_SERVER['host']}:{MYSQL_SERVER['port']}: {exc}")
    name = unique_name("sqlsnap_demo")
    with closing(admin):
        with closing(admin.cursor()) as cur:
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        try:
            with closing(driver.connect(**MYSQL_SERVER, database=name, charset="utf8mb4")) as conn:
                yield conn
        finally:
            with closing(admin.cursor()) as cur:
                cur.execute(f"DROP DATABASE {name}")


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mysql-MySQLdb", marks=pytest.mark.mysql),
        pytest.param("mysql-pymysql", marks=pytest.mark.mysql),
    ],
)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    target: str = request.param
    dialect, _, driver = target.partition("-")
    if dialect == "sqlite":
        database = _sqlite_database(tmp_path_factory.mktemp("demo") / "demo.db")
    elif dialect == "postgresql":
        database = _postgresql_database()
    else:
        database = _mysql_database(driver)
    with database as conn:
        yield _build(dialect, conn)


@pytest.fixture(scope="module")
def reference() -> Iterator[Built]:
    """An in-memory SQLite build, the yardstick the server builds are compared with."""
    with closing(sqlite3.connect(":memory:")) as conn:
        yield _build("sqlite", conn)


def foreign_keys(db: Built) -> dict[tuple[str, str], tuple[str, list[tuple[str, str]]]]:
    """Foreign keys as the database's catalog reports them.

    {(table, constraint): (parent table, [(column, parent column), ...])}. Read from the
    catalog rather than from the demo module, so the test sees what was really created.
    """
    if db.dialect == "sqlite":
        rows = [
            (table, str(fk_id), parent, column, parent_column)
            for table in demo.DEMO_TABLES
            for fk_id, _seq, parent, column, parent_column, *_rest in db.query(
                f"PRAGMA foreign_key_list({table})"
            )
        ]
    elif db.dialect == "postgresql":
        rows = db.query(
            """
            SELECT cl.relname, c.conname, rcl.relname, a.attname, ra.attname
            FROM pg_constraint c
            JOIN pg_class cl ON cl.oid = c.conrelid
            JOIN pg_class rcl ON rcl.oid = c.confrelid
            CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(col, refcol, ord)
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.col
            JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = k.refcol
            WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
            ORDER BY c.conname, k.ord
            """
        )
    else:
        rows = db.query(
            """
            SELECT TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME, COLUMN_NAME, REFERENCED_COLUMN_NAME
            FROM information_schema.KEY_COLUMN_USAGE
            WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL
            ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION
            """
        )
    out: dict[tuple[str, str], tuple[str, list[tuple[str, str]]]] = {}
    for table, constraint, parent, column, parent_column in rows:
        out.setdefault((table, constraint), (parent, []))[1].append((column, parent_column))
    return out


def fk_edges(db: Built) -> set[tuple[str, str, str]]:
    return {
        (table, column, parent)
        for (table, _name), (parent, pairs) in foreign_keys(db).items()
        for column, _parent_column in pairs
    }


def test_build_returns_the_real_row_counts(built: Built) -> None:
    assert list(built.counts) == list(demo.DEMO_TABLES)
    actual = {table: built.scalar(f"SELECT count(*) FROM {table}") for table in demo.DEMO_TABLES}
    assert actual == built.counts
    assert all(actual.values()), "every table has rows"


def test_progress_reports_each_table_once_in_order(built: Built) -> None:
    assert built.progress == list(built.counts.items())


def test_predicted_counts_match_the_build(built: Built) -> None:
    assert demo.table_row_counts(SCALE) == built.counts


def test_every_foreign_key_value_has_its_parent(built: Built) -> None:
    fks = foreign_keys(built)
    assert REQUIRED_FOREIGN_KEYS <= fk_edges(built)
    for (table, name), (parent, pairs) in fks.items():
        join = " AND ".join(f"p.{parent_column} = c.{column}" for column, parent_column in pairs)
        first_column, first_parent_column = pairs[0]
        orphans = built.scalar(
            f"SELECT count(*) FROM {table} c LEFT JOIN {parent} p ON {join} "
            f"WHERE c.{first_column} IS NOT NULL AND p.{first_parent_column} IS NULL"
        )
        assert orphans == 0, f"{table}.{name} has {orphans} rows without a parent in {parent}"


def test_narratives_are_300_to_3000_characters(built: Built) -> None:
    length = "CHAR_LENGTH" if built.dialect == "mysql" else "length"  # MySQL's length() counts bytes
    shortest, longest = built.query(
        f"SELECT min({length}(content)), max({length}(content)) FROM incident_narratives"
    )[0]
    assert 300 <= shortest <= longest <= 3000
    phases = {phase for (phase,) in built.query("SELECT DISTINCT phase FROM incident_narratives")}
    assert phases == {"initial", "follow_up", "final"}


def test_building_again_gives_identical_rows(built: Built) -> None:
    before = {table: built.query(sql) for table, sql in DUMPS.items()}
    assert built.rebuild() == built.counts
    after = {table: built.query(sql) for table, sql in DUMPS.items()}
    for table in DUMPS:
        assert after[table] == before[table], f"{table} differs between two builds"


def test_every_dialect_gets_the_same_data(built: Built, reference: Built) -> None:
    assert built.counts == reference.counts
    assert fk_edges(built) == fk_edges(reference)
    for table, sql in PORTABLE_DUMPS.items():
        assert built.query(sql) == reference.query(sql), f"{table} differs from the SQLite build"


def test_new_rows_get_fresh_ids(built: Built) -> None:
    """Explicit ids were inserted; the id generator must have moved past them (PostgreSQL's setval)."""
    cur = built.conn.cursor()
    try:
        cur.execute(
            "INSERT INTO ai_prompts (name, version, template, model, temperature, is_active, created_at) "
            "VALUES ('extra', 1, 'Say hi.', 'test-model', 0.5, FALSE, CURRENT_TIMESTAMP)"
        )
        cur.execute("SELECT max(id) FROM ai_prompts")
        assert cur.fetchone()[0] == built.counts["ai_prompts"] + 1
    finally:
        cur.close()
        built.conn.rollback()


def test_tables_are_listed_parent_first(reference: Built) -> None:
    position = {table: i for i, table in enumerate(demo.DEMO_TABLES)}
    for table, _column, parent in fk_edges(reference):
        assert table == parent or position[parent] < position[table], f"{parent} must come before {table}"


def test_schema_has_composite_and_self_referencing_keys(reference: Built) -> None:
    participants_pk = [
        name for _cid, name, *_rest, pk in reference.query("PRAGMA table_info(participants)") if pk
    ]
    assert participants_pk == ["incident_id", "user_id"]
    assert reference.scalar("SELECT count(*) FROM users WHERE manager_id IS NULL") > 0
    assert reference.scalar("SELECT count(*) FROM users WHERE manager_id IS NOT NULL") > 0
    assert reference.query("PRAGMA foreign_key_check") == []


def test_secrets_look_real(reference: Built) -> None:
    hashes = [h for (h,) in reference.query("SELECT password_hash FROM users")]
    assert all(h.startswith("$2b$12$") and len(h) == 60 for h in hashes)
    assert {t for (t,) in reference.query("SELECT DISTINCT token_type FROM oauth_accounts")} == {"Bearer"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda conn: demo.build(conn, "oracle"), "unknown dialect"),
        (lambda conn: demo.build(conn, "sqlite", 0), "scale must be a positive integer"),
    ],
)
def test_bad_arguments_are_rejected_before_touching_the_database(
    call: Callable[[Any], Any], message: str
) -> None:
    with closing(sqlite3.connect(":memory:")) as conn:
        with pytest.raises(ValueError, match=message):
            call(conn)
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
