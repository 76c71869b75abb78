"""Shared fixtures: each test that needs a server gets its own uniquely named database on
the real PostgreSQL or MariaDB of this machine, dropped afterwards."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

#: Override to point the tests at other servers.
PG_ADMIN_URL = os.environ.get("SQLSNAP_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
MYSQL_HOST = os.environ.get("SQLSNAP_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("SQLSNAP_TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("SQLSNAP_TEST_MYSQL_USER", "root")


#: The CLI and interpreter of the environment running the tests (never a fixed path: CI runs
#: in a fresh clone, whose own .venv must be the one tested).
PYTHON = sys.executable
SQLSNAP = str(Path(sys.executable).with_name("sqlsnap"))


#: scripts/test.sh (and so CI) sets this: a server or tool that cannot be reached fails the run
#: instead of skipping its tests, so "all three dialects" cannot pass green with one missing.
REQUIRE = os.environ.get("SQLSNAP_REQUIRE_SERVERS") == "1"
#: What the suite needs when REQUIRE is set: Python modules, and commands on PATH.
REQUIRED_MODULES = ("psycopg", "pymysql", "boto3", "moto", "pyrage", "zstandard", "jsonschema", "hypothesis",
                    "duckdb", "mcp")
REQUIRED_COMMANDS = ("age", "age-keygen", "sha256sum", "xxh128sum")


def unavailable(reason: str) -> None:
    """Skip, or with SQLSNAP_REQUIRE_SERVERS=1 fail, a test whose server is not reachable."""
    if REQUIRE:
        pytest.fail(f"{reason} (SQLSNAP_REQUIRE_SERVERS=1: every server must be up)", pytrace=False)
    pytest.skip(reason)


def pytest_sessionstart(session: pytest.Session) -> None:
    if not REQUIRE:
        return
    import importlib.util
    import shutil

    missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    missing += [c for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    if missing:
        raise pytest.UsageError(f"SQLSNAP_REQUIRE_SERVERS=1 but missing: {', '.join(missing)}; "
                                "run bash scripts/test.sh, which installs them")


def unique_name(prefix: str = "sqlsnap_t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextmanager
def pg_database(settings: Sequence[str] = ()) -> Iterator[str]:
    """A fresh, empty PostgreSQL database with ``ALTER DATABASE ... SET`` ``settings``; its
    URL, dropped (with FORCE) at the end."""
    psycopg = pytest.importorskip("psycopg")
    name = unique_name()
    try:
        admin = psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            for setting in settings:
                admin.execute(f'ALTER DATABASE "{name}" SET {setting}')
            yield f"{PG_ADMIN_URL}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database; dropped (with FORCE) after the test."""
    with pg_database() as url:
        yield url


def pg_connect(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(url, autocommit=True)


def _mysql_admin():  # type: ignore[no-untyped-def]
    pymysql = pytest.importorskip("pymysql")
    try:
        return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password="",
                               autocommit=True, connect_timeout=5, charset="utf8mb4")
    except pymysql.err.OperationalError as exc:
        unavailable(f"MariaDB/MySQL not reachable at {MYSQL_HOST}:{MYSQL_PORT}: {exc}")


@contextmanager
def mysql_database(*, create: bool = True) -> Iterator[str]:
    """The URL of a uniquely named MariaDB/MySQL database, created empty (or, without
    ``create``, left for the code under test to create), dropped at the end."""
    name = unique_name()
    admin = _mysql_admin()
    if create:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield f"mysql://{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """URL of a fresh, empty MariaDB/MySQL database; dropped after the test."""
    with mysql_database() as url:
        yield url


def mysql_connect(url: str):  # type: ignore[no-untyped-def]
    import pymysql

    name = url.rsplit("/", 1)[1]
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password="",
                           database=name, autocommit=True, charset="utf8mb4")


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'source.db'}"


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def any_url(request: pytest.FixtureRequest) -> str:
    """The same test body against every dialect."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "pg_url", "mysql": "mysql_url"}[request.param]
    return request.getfixturevalue(fixture)


def execute_script(url: str, statements: list[str]) -> None:
    """Run DDL/DML on a test database through the plain driver (never through sqlsnap)."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.split("///", 1)[1])
        with conn:
            for s in statements:
                conn.execute(s)
        conn.close()
    elif url.startswith("postgresql"):
        with pg_connect(url) as conn:
            for s in statements:
                conn.execute(s)
    else:
        conn = mysql_connect(url)
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
        conn.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the servers they use, so `-m "not mysql"` works without decorators."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("any_url") if callspec else None
        if "pg_url" in fixtures or param == "postgresql":
            item.add_marker(pytest.mark.postgresql)
        if "mysql_url" in fixtures or param == "mysql":
            item.add_marker(pytest.mark.mysql)
