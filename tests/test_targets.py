"""The write side (sqlsnap.targets) on real SQLite, PostgreSQL and MariaDB: one test body run
against each dialect, each time in a fresh database (conftest's ``any_url``), read back with
the plain driver, never through sqlsnap."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from sqlsnap.errors import AuthenticationError, NotFoundError, SnapError
from sqlsnap.model import Column, ForeignKey, Table
from sqlsnap.targets import column_type, connect_for_write, open_target
from sqlsnap.targets.base import BATCH_ROWS
from sqlsnap.urls import parse_url
from tests.conftest import PG_ADMIN_URL, execute_script, mysql_connect, pg_connect, unique_name

TEXTS = ["plain", "it's \"quoted\"", "back\\slash, \\N, tab\t and new\nline", "Zoë Sørensen, 日本語 👍", "",
         None]
AMOUNTS = [Decimal("12.34"), Decimal("-98765432.1234"), Decimal("0.0001"), Decimal("7"), None]
BLOBS = [b"", b"\x00\x01\xff", "héllo".encode(), bytes(range(256)), None]
TIMES = [datetime(2024, 2, 29, 23, 59, 59, 123000, UTC), datetime(1999, 12, 31, 0, 0, 0, 654321, UTC), None]
#: How each dialect gives a UTC timestamp back: aware (PostgreSQL), naive UTC (MySQL DATETIME,
#: which has no zone), ISO 8601 text with milliseconds when they are exact (SQLite).
STORED_TIME = {
    "postgresql": lambda t: t,
    "mysql": lambda t: t.replace(tzinfo=None),
    "sqlite": lambda t: t.isoformat(timespec="milliseconds" if t.microsecond % 1000 == 0
                                    else "microseconds").replace("+00:00", "Z"),
}
CHILD_ROWS = 60
PASSWORD = "wr0ng-s3cret-pw"


def schema(dialect: str) -> dict[str, Table]:
    """A parent and a child with a composite key; two tables that reference each other; a
    table whose key is added over a row without a parent."""

    def col(name: str, kind: str, nullable: bool = False) -> Column:
        return Column(name, column_type(kind, dialect), nullable)

    tables = [
        Table("parent", "", "parent", [col("tenant", "int"), col("id", "bigint"), col("name", "varchar:100")],
              primary_key=["tenant", "id"]),
        Table("child", "", "child",
              [col("tenant", "int"), col("id", "bigint"), col("parent_id", "bigint"),
               col("label", "text", True), col("amount", "numeric:14,4", True),
               col("happened_at", "timestamptz", True), col("payload", "bytes", True)],
              primary_key=["tenant", "id"],
              foreign_keys=[ForeignKey(("tenant", "parent_id"), "parent", ("tenant", "id"))]),
        Table("a", "", "a", [col("id", "bigint"), col("b_id", "bigint", True)], primary_key=["id"],
              foreign_keys=[ForeignKey(("b_id",), "b", ("id",))]),
        Table("b", "", "b", [col("id", "bigint"), col("a_id", "bigint")], primary_key=["id"],
              foreign_keys=[ForeignKey(("a_id",), "a", ("id",))]),
        Table("loose", "", "loose", [col("id", "bigint"), col("a_id", "bigint")], primary_key=["id"],
              foreign_keys=[ForeignKey(("a_id",), "a", ("id",))]),
    ]
    return {t.name: t for t in tables}


def rows() -> dict[str, list[tuple[Any, ...]]]:
    """Rows per table; parent ids differ per tenant, so (2, 1) has no parent."""
    parents = [(tenant, i, f"parent {i}")
               for tenant, ids in ((1, range(1, 6)), (2, range(6, 11))) for i in ids]
    children = []
    for i in range(CHILD_ROWS):
        tenant, parent_id = 1 + i % 2, 1 + i % 5 + 5 * (i % 2)
        children.append((tenant, i, parent_id, TEXTS[i % len(TEXTS)], AMOUNTS[i % len(AMOUNTS)],
                         TIMES[i % len(TIMES)], BLOBS[i % len(BLOBS)]))
    return {"parent": parents, "child": children, "a": [(1, 1), (2, None)], "b": [(1, 2)], "loose": [(1, 99)]}


def fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(parse_url(url).database)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    if url.startswith("postgresql"):
        with pg_connect(url) as conn:
            return conn.execute(sql).fetchall()
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def integrity_error(dialect: str) -> type[Exception]:
    if dialect == "sqlite":
        return sqlite3.IntegrityError
    if dialect == "postgresql":
        import psycopg

        return psycopg.IntegrityError
    import pymysql

    return pymysql.IntegrityError  # type: ignore[no-any-return]


def with_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


def drop_database(url: str, name: str) -> None:
    if url.startswith("postgresql"):
        execute_script(f"{PG_ADMIN_URL}/postgres", [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])
    elif url.startswith("mysql"):
        execute_script(url, [f"DROP DATABASE IF EXISTS `{name}`"])


def assert_one_line(error: BaseException, *absent: str) -> str:
    message = str(error)
    assert message and "\n" not in message, message
    for text in absent:
        assert text not in message
    return message


def test_a_target_creates_loads_links_and_rolls_back(any_url: str, tmp_path: Any) -> None:
    dialect = parse_url(any_url).dialect
    tables = schema(dialect)
    data = rows()

    with open_target(any_url) as target:
        assert target.dialect == dialect
        assert target.table_names() == []
        for table in tables.values():
            target.create_table(table)  # keys after the data, as for a cycle
        target.commit()
        assert target.table_names() == ["a", "b", "child", "loose", "parent"]

        # Children before parents and a cycle: nothing is checked until the keys are added.
        for name in ("child", "parent", "a", "b"):
            assert target.load(tables[name], iter(data[name])) == len(data[name])
        target.commit()
        for name in ("parent", "child", "a", "b"):
            target.add_foreign_keys(tables[name])
        target.commit()

        # A NOT NULL broken in the middle of a load past one batch: rollback keeps nothing of it.
        bad = [(3, i, None if i == BATCH_ROWS + 500 else f"n{i}") for i in range(1, BATCH_ROWS + 1000)]
        with pytest.raises(SnapError) as failed:
            target.load(tables["parent"], iter(bad))
        assert_one_line(failed.value)
        assert failed.value.fields["table"] == "parent"
        target.rollback()

        # Adding a key checks the rows already there, on SQLite too.
        assert target.load(tables["loose"], iter(data["loose"])) == 1
        target.commit()
        with pytest.raises(SnapError) as orphan:
            target.add_foreign_keys(tables["loose"])
        assert "loose" in assert_one_line(orphan.value)
        target.rollback()

    assert fetch(any_url, "SELECT tenant, id, name FROM parent ORDER BY tenant, id") == data["parent"]
    stored_time = STORED_TIME[dialect]
    expected = [
        (tenant, i, parent_id, label, amount, None if at is None else stored_time(at), blob)
        for tenant, i, parent_id, label, amount, at, blob in sorted(data["child"], key=lambda r: (r[0], r[1]))
    ]
    got = fetch(any_url, "SELECT tenant, id, parent_id, label, amount, happened_at, payload FROM child "
                         "ORDER BY tenant, id")
    # Decimals compare by value (the column keeps 4 places); SQLite stores NUMERIC as a number.
    got = [(*r[:4], None if r[4] is None else Decimal(str(r[4])), *r[5:]) for r in got]
    assert got == expected
    assert fetch(any_url, "SELECT id, b_id FROM a ORDER BY id") == data["a"]

    # The keys hold: composite (tenant 2 has no parent 1) and both ways round the cycle.
    pragma = ["PRAGMA foreign_keys = ON"] if dialect == "sqlite" else []
    for orphan_row in ("INSERT INTO child (tenant, id, parent_id) VALUES (2, 1000, 1)",
                       "INSERT INTO b (id, a_id) VALUES (2, 99)", "INSERT INTO a (id, b_id) VALUES (3, 99)"):
        with pytest.raises(integrity_error(dialect)):
            execute_script(any_url, [*pragma, orphan_row])

    # connect_for_write, for the CLI: a plain DB-API connection.
    conn = connect_for_write(any_url)
    conn.close()

    # A missing database is created (a SQLite file by opening it), unless create=False.
    name = unique_name()
    missing = (f"sqlite:///{tmp_path / (name + '.db')}" if dialect == "sqlite"
               else with_database(any_url, name))
    with pytest.raises(NotFoundError) as not_found:
        open_target(missing, create=False)
    assert name in assert_one_line(not_found.value)
    try:
        with open_target(missing) as created:
            assert created.table_names() == []
    finally:
        drop_database(any_url, name)

    # Refused credentials: one line, exit 3, terminal (retrying cannot help), no password. This
    # PostgreSQL trusts 127.0.0.1 (any password passes), so an unknown role is the refusal it
    # can give; SQLite has no credentials.
    if dialect != "sqlite":
        user = "sqlsnap_no_such_role" if dialect == "postgresql" else parse_url(any_url).user or "root"
        with pytest.raises(AuthenticationError) as refused:
            open_target(with_credentials(any_url, user, PASSWORD))
        assert_one_line(refused.value, PASSWORD)
        assert refused.value.exit_code == 3
        assert not refused.value.transient
