"""MariaDB/MySQL: the export's connection killed (KILL, a server going away) mid-export is a
one-line, transient ServerUnreachable (exit 3), with no "Exception ignored" noise from the
driver and no internal error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import sqlsnap
from sqlsnap.errors import ServerUnreachable
from tests.conftest import execute_script, mysql_connect

pytestmark = pytest.mark.mysql


def _kill_export(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = mysql_connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                    (name,))
        for (pid,) in cur.fetchall():
            cur.execute(f"KILL CONNECTION {int(pid)}")
    conn.close()


class AtStart:
    """start(): after the snapshot, before the count; with ``reading``, the first advance()."""

    def __init__(self, action: Any, reading: bool = False) -> None:
        self.action = action
        self.reading = reading
        self.done = False

    def start(self, tables: Any) -> None:
        if not self.reading:
            self.action()

    def advance(self, *args: Any) -> None:
        if self.reading and not self.done:
            self.done = True
            self.action()

    def table_done(self, *args: Any) -> None:
        pass

    def finish(self) -> None:
        pass


@pytest.mark.parametrize("reading", [False, True], ids=["counting", "reading"])
def test_killed_connection_is_one_line_and_transient(mysql_url: str, tmp_path: Path, reading: bool) -> None:
    execute_script(mysql_url, [
        "SET SESSION max_recursive_iterations = 100000",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO t WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100000) "
        "SELECT n, REPEAT('x', 400) FROM s"])
    with pytest.raises(ServerUnreachable) as info:
        sqlsnap.export(mysql_url, str(tmp_path / "x.json"),
                       progress=AtStart(lambda: _kill_export(mysql_url), reading))
    assert "\n" not in str(info.value) and info.value.exit_code == 3, str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_killed_connection_prints_no_driver_noise(mysql_url: str, tmp_path: Path) -> None:
    """In a process of its own, so that whatever the driver prints at exit is seen."""
    execute_script(mysql_url, ["CREATE TABLE t (id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1), (2)"])
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from click.testing import CliRunner
        import sqlsnap
        from sqlsnap.cli.errors import run
        from tests.test_faults_mysql import AtStart, _kill_export
        url, out = {mysql_url!r}, {str(tmp_path / 'y.json')!r}
        run(lambda: sqlsnap.export(url, out, progress=AtStart(lambda: _kill_export(url))))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: "), proc.stderr
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr


def test_server_shutdown_mid_export(tmp_path: Path) -> None:
    """A private MariaDB shut down while the export reads: ServerUnreachable, one line."""
    import pymysql

    from tests._private_servers import private_mariadb

    with private_mariadb() as server:
        conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="", autocommit=True)
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE TABLE app.t (id INTEGER PRIMARY KEY, v TEXT)")
            cur.execute("INSERT INTO app.t VALUES (1, 'x'), (2, 'y')")
        conn.close()
        url = f"mysql://root@127.0.0.1:{server.port}/app"
        with pytest.raises(ServerUnreachable) as info:
            sqlsnap.export(url, str(tmp_path / "x.json"), progress=AtStart(server.shutdown))
    assert "\n" not in str(info.value) and info.value.transient, str(info.value)
    assert list(tmp_path.iterdir()) == []
