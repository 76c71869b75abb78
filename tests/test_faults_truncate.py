"""TRUNCATE is not MVCC-safe: a snapshot taken before it sees the table empty afterwards.

The export locks every table it exports (ACCESS SHARE) before its snapshot exists, so a
transaction that truncates one table and inserts into another is either wholly in the export
or wholly out of it (docs/reliability.md). MySQL/MariaDB cannot lock before the snapshot; a
concurrent TRUNCATE there fails the export (the table's definition changed), never a silent
empty table.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import sqlsnap
from sqlsnap.errors import SnapError
from tests.conftest import execute_script, mysql_connect, pg_connect

ROWS = 200


class _OnStart:
    """A progress object that acts in start() (after the snapshot, before any row is read)
    and ignores the rest."""

    def start(self, tables: Any) -> None:
        raise NotImplementedError

    def advance(self, *args: Any, **kwargs: Any) -> None:
        pass

    def table_done(self, *args: Any, **kwargs: Any) -> None:
        pass

    def finish(self) -> None:
        pass


def _setup(url: str) -> None:
    execute_script(url, [
        "CREATE TABLE t_trunc (id INTEGER PRIMARY KEY, v TEXT)",
        "CREATE TABLE t_other (id INTEGER PRIMARY KEY, v TEXT)",
        f"INSERT INTO t_trunc SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) g"
        if url.startswith("postgresql") else
        "INSERT INTO t_trunc VALUES " + ", ".join(f"({i}, 'row {i}')" for i in range(1, ROWS + 1)),
        "INSERT INTO t_other VALUES (1, 'before')",
    ])


def _rows(path: Path) -> dict[str, int]:
    return {name: len(rows) for name, rows in json.loads(path.read_text())["data"].items()}


def _wait_for_lock_wait(url: str, app: str = "sqlsnap", seconds: float = 20) -> None:
    """Until a session named ``app`` waits for a lock in this database."""
    db = url.rsplit("/", 1)[1]
    with pg_connect(url) as conn:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                             "application_name = %s AND wait_event_type = 'Lock'", (db, app)).fetchone()[0]
            if n:
                return
            time.sleep(0.05)
    raise AssertionError("the export never waited for the TRUNCATE's lock")


def _export_in_thread(url: str, out: Path, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def go() -> None:
        try:
            outcome["result"] = sqlsnap.export(url, str(out), **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    th = threading.Thread(target=go, daemon=True)
    th.start()
    return th, outcome


@pytest.mark.parametrize("jobs", [1, 2])
def test_postgresql_truncate_committed_while_the_export_starts_is_wholly_in_it(
        pg_url: str, tmp_path: Path, jobs: int) -> None:
    """The TRUNCATE holds its lock while the export starts; it commits, with an insert into
    another table. Before the fix the snapshot was older than the commit: t_trunc empty
    (TRUNCATE is not MVCC-safe) and t_other without the insert."""
    _setup(pg_url)
    writer = pg_connect(pg_url)
    writer.autocommit = False
    writer.execute("INSERT INTO t_other VALUES (2, 'same transaction as the truncate')")
    writer.execute("TRUNCATE t_trunc")
    out = tmp_path / "snap.json"
    th, outcome = _export_in_thread(pg_url, out, jobs=jobs)
    try:
        _wait_for_lock_wait(pg_url)
    finally:
        writer.commit()
        writer.close()
    th.join(60)
    assert "error" not in outcome, outcome.get("error")
    assert _rows(out) == {"t_other": 2, "t_trunc": 0}


@pytest.mark.parametrize("jobs", [1, 2])
def test_postgresql_truncate_started_during_the_export_waits_for_it(
        pg_url: str, tmp_path: Path, jobs: int) -> None:
    """Once the export has started, a TRUNCATE waits for it: with a lock_timeout of its own
    it gives up, its transaction rolls back, and the export holds none of it."""
    _setup(pg_url)
    outcome: dict[str, Any] = {}

    class Truncate(_OnStart):
        """A progress object: start() runs after the snapshot, before any row is read."""

        def start(self, tables: Any) -> None:
            with pg_connect(pg_url) as conn:
                conn.autocommit = False
                conn.execute("SET lock_timeout = '1s'")
                conn.execute("INSERT INTO t_other VALUES (2, 'same transaction as the truncate')")
                try:
                    conn.execute("TRUNCATE t_trunc")
                    conn.commit()
                    outcome["truncate"] = "committed"
                except Exception as exc:  # noqa: BLE001 - the expected lock timeout
                    conn.rollback()
                    outcome["truncate"] = type(exc).__name__

    out = tmp_path / "snap.json"
    sqlsnap.export(pg_url, str(out), jobs=jobs, progress=Truncate())  # type: ignore[arg-type]
    assert outcome["truncate"] == "LockNotAvailable"
    assert _rows(out) == {"t_other": 1, "t_trunc": ROWS}
    with pg_connect(pg_url) as conn:  # the export ended: the TRUNCATE may run now
        conn.execute("TRUNCATE t_trunc")


def test_postgresql_lock_timeout_fails_in_one_line(pg_url: str, tmp_path: Path) -> None:
    """A lock the export cannot get within --lock-timeout fails the export (transient) instead
    of waiting forever; nothing is written."""
    _setup(pg_url)
    holder = pg_connect(pg_url)
    holder.autocommit = False
    holder.execute("LOCK TABLE t_trunc IN ACCESS EXCLUSIVE MODE")
    try:
        started = time.monotonic()
        with pytest.raises(SnapError) as info:
            sqlsnap.export(pg_url, str(tmp_path / "snap.json"), lock_timeout=1)
        assert time.monotonic() - started < 15
    finally:
        holder.rollback()
        holder.close()
    message = str(info.value)
    assert "\n" not in message
    assert "t_trunc" in message and "--lock-timeout" in message, message
    assert info.value.transient
    assert list(tmp_path.iterdir()) == []


def test_mysql_concurrent_truncate_fails_the_export_safely(mysql_url: str, tmp_path: Path) -> None:
    """MariaDB: a TRUNCATE committed after the consistent snapshot started makes reading that
    table fail ("Table definition has changed"): the export fails, no file is written."""
    execute_script(mysql_url, [
        "CREATE TABLE t_trunc (id INTEGER PRIMARY KEY, v TEXT)",
        "CREATE TABLE t_other (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO t_trunc VALUES " + ", ".join(f"({i}, 'row {i}')" for i in range(1, ROWS + 1)),
        "INSERT INTO t_other VALUES (1, 'before')",
    ])

    class Truncate(_OnStart):
        def start(self, tables: Any) -> None:
            conn = mysql_connect(mysql_url)
            with conn.cursor() as cur:
                cur.execute("TRUNCATE t_trunc")
            conn.close()

    out = tmp_path / "snap.json"
    try:
        sqlsnap.export(mysql_url, str(out), progress=Truncate())  # type: ignore[arg-type]
    except SnapError as exc:
        assert "\n" not in str(exc)
        assert list(tmp_path.iterdir()) == []
    else:  # if the server let it through, the export must hold the rows from before
        assert _rows(out) == {"t_other": 1, "t_trunc": ROWS}
