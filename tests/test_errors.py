"""Failures through the real command line: documented exit codes, one ``Error:`` line on
stderr, no traceback, no password, and nothing left under the final name or beside it."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlsnap.errors import EXIT_CODES
from tests.conftest import PYTHON, SQLSNAP, execute_script, pg_connect


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SQLSNAP, *args], capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert code in EXIT_CODES
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture
def small_sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'small.db'}"
    execute_script(url, ["CREATE TABLE t (id INTEGER)", "INSERT INTO t VALUES (1)"])
    return url


# -- connection and lookup errors -------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "postgresql://postgres@127.0.0.1:1/db",
    "mysql://root@127.0.0.1:1/db",
])
def test_unreachable_server(url: str, outdir: Path) -> None:
    line = assert_one_error_line(run_cli("export", url, "-q", "-o", str(outdir / "x.json")), 3)
    assert "127.0.0.1" in line
    assert os.listdir(outdir) == []


@pytest.mark.mysql
def test_wrong_password_on_mariadb(outdir: Path) -> None:
    pytest.importorskip("pymysql")
    proc = run_cli("export", "mysql://root:wrongpw@127.0.0.1:3306/test", "-q", "-o", str(outdir / "x.json"))
    line = assert_one_error_line(proc, 3)
    assert "wrongpw" not in proc.stderr + proc.stdout
    assert "password" in line.lower()
    assert os.listdir(outdir) == []


@pytest.mark.parametrize("url", [
    pytest.param("postgresql://postgres:pw123secret@127.0.0.1:5432/no_such_db_sqlsnap",
                 marks=pytest.mark.postgresql),
    pytest.param("mysql://root@127.0.0.1:3306/no_such_db_sqlsnap", marks=pytest.mark.mysql),
    "sqlite:///no/such/file.db",
])
def test_unknown_database(url: str, outdir: Path) -> None:
    proc = run_cli("export", url, "-q", "-o", str(outdir / "x.json"))
    line = assert_one_error_line(proc, 4)
    assert "no_such_db_sqlsnap" in line or "no/such/file.db" in line
    assert "pw123secret" not in proc.stderr
    assert os.listdir(outdir) == []


def test_unknown_table_in_tables(small_sqlite: str, outdir: Path) -> None:
    proc = run_cli("export", small_sqlite, "-q", "-o", str(outdir / "x.json"), "--tables", "t",
                   "--tables", "nope*")
    line = assert_one_error_line(proc, 4)
    assert "nope*" in line
    assert os.listdir(outdir) == []


@pytest.mark.postgresql
def test_unknown_table_and_schema_on_postgresql(pg_url: str, outdir: Path) -> None:
    execute_script(pg_url, ["CREATE TABLE t (id int)"])
    assert_one_error_line(run_cli("export", pg_url, "-q", "-o", str(outdir / "x.json"), "--tables", "zzz"), 4)
    line = assert_one_error_line(run_cli("export", pg_url, "-q", "-o", str(outdir / "x.json"),
                                         "--schema", "no_such_schema"), 4)
    assert "no_such_schema" in line
    assert os.listdir(outdir) == []


# -- usage errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "notaurl",
    "foo://host/db",
    "postgresql://postgres@127.0.0.1:notaport/db",
    "sqlite://",
])
def test_bad_url(url: str, outdir: Path) -> None:
    assert_one_error_line(run_cli("export", url, "-q", "-o", str(outdir / "x.json")), 2)
    assert os.listdir(outdir) == []


def test_bad_url_never_shows_its_password(outdir: Path) -> None:
    proc = run_cli("export", "postgresql://u:hunter2pw@127.0.0.1:notaport/db", "-q", "-o",
                   str(outdir / "x.json"))
    assert_one_error_line(proc, 2)
    assert "hunter2pw" not in proc.stderr


def test_jsonl_to_stdout_is_a_usage_error(small_sqlite: str) -> None:
    assert_one_error_line(run_cli("export", small_sqlite, "-q", "--format", "jsonl", "-o", "-"), 2)


# -- output errors ----------------------------------------------------------------------------------


def test_output_folder_is_a_file(small_sqlite: str, tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert_one_error_line(run_cli("export", small_sqlite, "-q", "-o", str(blocker / "x.json")), 6)
    assert blocker.read_text() == "x"


def test_output_folder_missing(small_sqlite: str, tmp_path: Path) -> None:
    proc = run_cli("export", small_sqlite, "-q", "-o", str(tmp_path / "nope" / "x.json"))
    line = assert_one_error_line(proc, 6)
    assert "nope" in line
    assert not (tmp_path / "nope").exists()


def test_output_is_an_existing_folder(small_sqlite: str, outdir: Path) -> None:
    (outdir / "keep.txt").write_text("keep")
    assert_one_error_line(run_cli("export", small_sqlite, "-q", "-o", str(outdir)), 6)
    assert os.listdir(outdir) == ["keep.txt"]  # no temp or spool file left beside it


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs, mounted for the test (needs root)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_read_only_output_folder(small_sqlite: str, tmpfs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    line = assert_one_error_line(run_cli("export", small_sqlite, "-q", "-o", str(tmpfs / "x.json")), 6)
    assert "permission denied" in line or "read-only" in line.lower()
    assert os.listdir(tmpfs) == []


@pytest.mark.parametrize("output", ["out.json", "out.json.zst", "folder"])
def test_disk_full(tmp_path: Path, tmpfs: Path, output: str) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"
    # Several megabytes that do not compress: the output cannot fit in 1 MB whatever the codec.
    execute_script(url, ["CREATE TABLE t (id INTEGER, v TEXT)"]
                   + [f"INSERT INTO t VALUES ({i}, '{os.urandom(1000).hex()}')" for i in range(3000)])
    extra = ["--format", "jsonl"] if output == "folder" else []
    proc = run_cli("export", url, "-q", "-o", str(tmpfs / output), *extra)
    line = assert_one_error_line(proc, 6)
    assert "disk full" in line
    assert os.listdir(tmpfs) == []  # no partial file, no temp file, no spool


@pytest.mark.postgresql
def test_a_full_temporary_folder_is_named_as_such(pg_url: str, tmpfs: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables read ahead of the writer spool to TMPDIR when the output is not a local file
    (here the in-memory store; S3 and stdout alike). Before: "disk full while writing the
    output", about a destination that had room."""
    import tempfile

    import sqlsnap
    from sqlsnap.errors import OutputError
    from sqlsnap.exporter import channel

    execute_script(pg_url, ["CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((-g)::text) AS v "
                            "FROM generate_series(1, 150000) g", "CREATE TABLE u AS SELECT * FROM t",
                            "ANALYZE"])  # two tables: two readers
    monkeypatch.setattr(tempfile, "tempdir", str(tmpfs))
    monkeypatch.setattr(channel, "AHEAD_BYTES", 0)  # whatever is read ahead spools (1 MB: full)
    with pytest.raises(OutputError) as failed:
        sqlsnap.export(pg_url, f"memory://{uuid.uuid4().hex}/x.json", jobs=2)
    message = str(failed.value)
    assert f"the temporary folder {tmpfs} is full" in message and "set TMPDIR" in message, message
    assert os.listdir(tmpfs) == []  # spools are unlinked from the start


def test_sqlite_temporary_files_filling_tmpdir_name_it(tmp_path: Path, tmpfs: Path) -> None:
    """A SQLite segment's closure is a temporary table, in SQLite's temporary folder (TMPDIR)
    once it outgrows the page cache. Before: "database or disk is full", exit 1."""
    import sqlite3

    db = tmp_path / "seg.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id))")
        conn.executemany("INSERT INTO p VALUES (?)", ((i,) for i in range(200_000)))
        conn.executemany("INSERT INTO c VALUES (?, ?)", ((i, i % 200_000) for i in range(300_000)))
    env = {k: v for k, v in os.environ.items() if k != "SQLITE_TMPDIR"}
    proc = subprocess.run([SQLSNAP, "export", f"sqlite:///{db}", "--where", "p.id >= 0", "-q", "-o",
                           str(tmp_path / "x.json")], capture_output=True, text=True, timeout=120,
                          env={**env, "TMPDIR": str(tmpfs)})
    line = assert_one_error_line(proc, 6)
    assert f"the temporary folder {tmpfs} is full" in line and "set TMPDIR" in line, line
    assert not (tmp_path / "x.json").exists()


# -- missing driver --------------------------------------------------------------------------------


def test_missing_driver(outdir: Path) -> None:
    code = "import sys; sys.modules['psycopg'] = None; from sqlsnap.cli import main; main()"
    proc = subprocess.run([PYTHON, "-c", code, "export", "postgresql://postgres@127.0.0.1/x", "-q", "-o",
                           str(outdir / "x.json")], capture_output=True, text=True, timeout=60)
    line = assert_one_error_line(proc, 5)
    assert "pip install" in line
    assert os.listdir(outdir) == []


def test_an_unexpected_error_is_one_line_without_a_traceback(small_sqlite: str, outdir: Path) -> None:
    """A bug (any exception that is not a SnapError) still ends in one masked line, exit 1."""
    code = ("import sqlsnap.exporter.job as e\n"
            "def boom(*a, **k): raise RuntimeError('bug near postgresql://u:hunter2@db/x')\n"
            "e._count_rows = boom\n"
            "from sqlsnap.cli import main; main()")
    args = [PYTHON, "-c", code, "export", small_sqlite, "-q", "-o", str(outdir / "x.json")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    line = assert_one_error_line(proc, 1)
    assert "internal error (RuntimeError: bug near" in line and "SQLSNAP_DEBUG=1" in line
    assert "hunter2" not in proc.stderr
    assert os.listdir(outdir) == []
    debug = subprocess.run(args, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "SQLSNAP_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# -- interruption ----------------------------------------------------------------------------------


class Export:
    """A CLI export in a subprocess, its stderr collected line by line."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen([SQLSNAP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for_line(self, text: str, timeout: float) -> None:
        with self.changed:
            ok = self.changed.wait_for(lambda: any(text in line for line in self.lines), timeout)
        assert ok, f"no line with {text!r} after {timeout} s: {self.lines}"

    def interrupt(self, sig: signal.Signals, timeout: float) -> int:
        try:
            self.proc.send_signal(sig)
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.thread.join(10)
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()


def assert_interrupted(code: int, lines: list[str], outdir: Path) -> None:
    assert code == 130, lines
    assert not any("Traceback" in line for line in lines), lines
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert "interrupted" in errors[0]
    assert os.listdir(outdir) == []  # no final file, no temp file, no spool


def assert_no_sqlsnap_session(pg_url: str) -> None:
    name = pg_url.rsplit("/", 1)[1]
    with pg_connect(pg_url) as conn:
        deadline = time.monotonic() + 5
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sqlsnap' "
                           "AND datname = %s", (name,)).fetchone()[0]:
            assert time.monotonic() < deadline, "sqlsnap sessions left on the server"
            time.sleep(0.1)


@pytest.mark.postgresql
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_export_leaves_nothing(pg_url: str, outdir: Path, sig: signal.Signals) -> None:
    """Four tables of 200k rows with 200-character texts, one reader: the signal arrives
    when the first table is finished (its spool on disk) and three are still to go."""
    execute_script(pg_url, [
        f"CREATE TABLE big_{i} AS SELECT g AS id, repeat(md5(g::text), 6) || '{i}' AS t"
        " FROM generate_series(1, 200000) g" for i in range(4)])
    export = Export(["export", pg_url, "-j", "1", "-o", str(outdir / "x.json")])
    export.wait_for_line("big_", timeout=60)
    assert export.proc.poll() is None, export.lines
    assert os.listdir(outdir), "the spool of the first table should be on disk"
    code = export.interrupt(sig, timeout=20)
    assert_interrupted(code, export.lines, outdir)
    assert not any(line.startswith("exported") for line in export.lines)
    assert_no_sqlsnap_session(pg_url)


@pytest.mark.postgresql
def test_interrupt_while_a_reader_waits_on_the_server(pg_url: str, outdir: Path) -> None:
    """The export waits on a table another session holds locked; Ctrl-C must still end it."""
    execute_script(pg_url, [
        "CREATE TABLE a_first AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 1000) g",
        "CREATE TABLE z_locked (id int)",
        "INSERT INTO z_locked VALUES (1)",
        "ANALYZE",
    ])
    locker = pg_connect(pg_url)
    locker.autocommit = False
    locker.execute("LOCK TABLE z_locked IN ACCESS EXCLUSIVE MODE")
    try:
        export = Export(["export", pg_url, "-j", "1", "-o", str(outdir / "x.json")])
        # The export locks every table before its snapshot exists: it waits there.
        from tests.test_faults_truncate import _wait_for_lock_wait

        _wait_for_lock_wait(pg_url)
        assert export.proc.poll() is None, export.lines
        code = export.interrupt(signal.SIGINT, timeout=8)
    finally:
        locker.rollback()
        locker.close()
    assert_interrupted(code, export.lines, outdir)
    assert_no_sqlsnap_session(pg_url)


def test_unique_output_names_do_not_clash_between_runs(small_sqlite: str, outdir: Path) -> None:
    """Two exports to the same path one after the other: the second replaces the first whole
    (with --force; without it the second refuses: tests/test_faults_output.py)."""
    out = outdir / f"{uuid.uuid4().hex}.json"
    for _ in range(2):
        proc = run_cli("export", small_sqlite, "-q", "--force", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
    assert sorted(p for p in os.listdir(outdir) if not p.endswith(".sha256")) == [out.name]
    assert out.read_bytes().startswith(b'{"metadata": ')
