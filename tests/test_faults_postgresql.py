"""PostgreSQL faults in the lock, count and snapshot phases, each mapped to its documented
class (exit code) with a one-line message that names the fix, never an internal error.

Restarts and server settings run against a throwaway cluster (tests/_private_servers.py),
never the shared server.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sqlsnap
from sqlsnap.errors import ConnectError, ServerUnreachable, SnapError
from tests._private_servers import PrivatePostgres, private_postgres
from tests.conftest import SQLSNAP, execute_script

pytestmark = pytest.mark.postgresql


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivatePostgres]:
    with private_postgres(["max_connections = 20"]) as server:
        yield server


@pytest.fixture
def db(cluster: PrivatePostgres) -> Iterator[str]:
    name = f"f_{os.urandom(4).hex()}"
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = cluster.url.rsplit("/", 1)[0] + "/" + name
    execute_script(url, ["CREATE TABLE t (id int PRIMARY KEY, v text)",
                         "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
                         "CREATE TABLE u (id int PRIMARY KEY)", "INSERT INTO u VALUES (1)"])
    yield url
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class AtStart:
    """A progress object whose start() (after the snapshot, before any row is counted) runs
    ``action``."""

    def __init__(self, action: Any) -> None:
        self.action = action

    def start(self, tables: Any) -> None:
        self.action()

    def advance(self, *args: Any) -> None:
        pass

    def table_done(self, *args: Any) -> None:
        pass

    def finish(self) -> None:
        pass


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "internal" not in text.lower(), text
    return text


@pytest.mark.parametrize("jobs", [1, 2])
def test_server_restart_after_the_snapshot(cluster: PrivatePostgres, db: str, tmp_path: Path,
                                           jobs: int) -> None:
    with pytest.raises(SnapError) as info:
        sqlsnap.export(db, str(tmp_path / "x.json"), jobs=jobs, progress=AtStart(cluster.restart))
    assert isinstance(info.value, ServerUnreachable), repr(info.value)
    assert info.value.exit_code == 3 and info.value.transient
    assert "try again" in _one_line(info.value)
    assert list(tmp_path.iterdir()) == []


def test_terminated_backend(db: str, tmp_path: Path) -> None:
    name = db.rsplit("/", 1)[1]

    def terminate() -> None:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'sqlsnap' AND datname = %s", (name,))

    with pytest.raises(ServerUnreachable) as info:
        sqlsnap.export(db, str(tmp_path / "x.json"), progress=AtStart(terminate))
    assert "terminated" in _one_line(info.value) or "closed" in str(info.value)


@pytest.mark.parametrize("setting", ["statement_timeout = '1ms'",
                                     "idle_in_transaction_session_timeout = '300ms'"])
def test_role_or_database_timeouts_do_not_end_the_snapshot(cluster: PrivatePostgres, db: str, tmp_path: Path,
                                                           setting: str) -> None:
    """The export's own sessions set both to 0 (as pg_dump does): before, the count failed
    (an internal error) or the idle snapshot transaction was ended mid-export."""
    name = db.rsplit("/", 1)[1]
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET {setting}')
    result = sqlsnap.export(db, str(tmp_path / "x.json"), jobs=2, progress=AtStart(lambda: time.sleep(1)))
    assert result.tables["t"].rows == 5000


def test_too_many_tables_for_the_lock_table(tmp_path: Path) -> None:
    """max_locks_per_transaction exhausted: a one-line message naming the setting and --tables."""
    with private_postgres(["max_connections = 5", "max_locks_per_transaction = 10",
                           "superuser_reserved_connections = 0", "max_worker_processes = 0",
                           "autovacuum = off", "max_wal_senders = 0"]) as server:
        for start in range(0, 600, 50):
            execute_script(server.url, [f"CREATE TABLE t{i} (id int)" for i in range(start, start + 50)])
        with pytest.raises(SnapError) as info:
            sqlsnap.export(server.url, str(tmp_path / "x.json"))
        text = _one_line(info.value)
        assert "max_locks_per_transaction" in text and "--tables" in text, text
        proc = subprocess.run([SQLSNAP, "export", server.url, "-o", str(tmp_path / "y.json")],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_url_options_and_pgoptions_reach_the_server(db: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq users expect ?options= and PGOPTIONS to apply: a setting the server refuses
    proves they are sent (before, both were silently replaced)."""
    with pytest.raises(ConnectError, match="work_mem"):
        sqlsnap.export(db + "?options=-c%20work_mem%3Dnonsense", str(tmp_path / "x.json"))
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=nonsense")
    with pytest.raises(ConnectError, match="work_mem"):
        sqlsnap.export(db, str(tmp_path / "y.json"))
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=7MB")
    assert sqlsnap.export(db, str(tmp_path / "z.json")).tables["u"].rows == 1


def test_fewer_free_connections_than_jobs_reads_with_fewer(tmp_path: Path) -> None:
    """Before: the export failed after counting ("too many clients"). Now it reads with the
    connections it got, and says so."""
    with private_postgres(["max_connections = 4", "superuser_reserved_connections = 0"]) as server:
        execute_script(server.url, ["CREATE TABLE a (id int)", "CREATE TABLE b (id int)",
                                    "CREATE TABLE c (id int)", "INSERT INTO a VALUES (1)"])
        held = [psycopg.connect(server.url) for _ in range(2)]  # 2 of 4 slots left
        try:
            result = sqlsnap.export(server.url, str(tmp_path / "x.json"), jobs=3)
        finally:
            for conn in held:
                conn.close()
    assert result.tables["a"].rows == 1
    assert any("reading with 2 connections instead of 3" in n for n in result.notices), result.notices
