"""Signals and kills: what is left on disk, and what is said.

- a double Ctrl-C during a JSON Lines export leaves no hidden ``.tmp`` folder;
- the hidden temporaries of an export killed with SIGKILL are found and removed by a later
  export into the same folder, or by ``sqlsnap prune``, once no running process owns them
  (stores/file.py ``is_stale``), and each says so;
- Ctrl-C or SIGTERM in the first moments of the process ends it with one ``Error:`` line and
  exit 130, never a traceback or silence.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import SQLSNAP

ROWS = 400_000


@pytest.fixture(scope="module")
def big_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database that takes a few seconds to export (several tables, ~60 MB)."""
    path = tmp_path_factory.mktemp("big") / "big.db"
    conn = sqlite3.connect(path)
    for t in ("a", "b", "c"):
        conn.execute(f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute(f"INSERT INTO {t} WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
                     f"WHERE n < {ROWS}) SELECT n, printf('%050d', n) FROM s")
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def _wait_for_hidden(folder: Path, seconds: float = 30) -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        hidden = [n for n in os.listdir(folder) if n.startswith(".")]
        if hidden:
            return hidden
        time.sleep(0.01)
    raise AssertionError("the export never created its temporary")


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([SQLSNAP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_double_ctrl_c_leaves_nothing(big_sqlite: str, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = out / ("snap" if fmt == "jsonl" else "snap.json")
    proc = _start("export", big_sqlite, "--format", fmt, "-o", str(target), "-q")
    _wait_for_hidden(out)
    time.sleep(0.3)  # some files under way
    proc.send_signal(signal.SIGINT)
    time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("Error: ") == 1, err
    assert os.listdir(out) == []


def _kill_mid_export(big_sqlite: str, out: Path, fmt: str) -> list[str]:
    target = out / ("snap" if fmt == "jsonl" else "snap.json")
    proc = subprocess.Popen([SQLSNAP, "export", big_sqlite, "--format", fmt, "-o", str(target), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hidden = _wait_for_hidden(out)
    proc.kill()
    proc.wait()
    old = time.time() - 3600  # as if killed an hour ago
    for name in hidden:
        for folder, _dirs, files in os.walk(out / name):
            for f in files:
                os.utime(os.path.join(folder, f), (old, old))
        os.utime(out / name, (old, old))
    return hidden


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_stale_temporaries_are_removed_by_the_next_export(big_sqlite: str, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    hidden = _kill_mid_export(big_sqlite, out, fmt)
    fresh = out / ".other.json.tmp-1-0123abcd"  # a temporary nobody killed: too young to remove
    fresh.write_text("")
    small = tmp_path / "small.db"
    sqlite3.connect(small).execute("CREATE TABLE t (id INTEGER)").connection.close()
    proc = subprocess.run([SQLSNAP, "export", f"sqlite:///{small}", "-o", str(out / "next.json")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in hidden:
        assert f"Note: removed {out / name}, a temporary left by an export that was killed" in proc.stderr
    assert sorted(os.listdir(out)) == sorted([fresh.name, "next.json", "next.json.sha256"])


def test_prune_removes_stale_temporaries(big_sqlite: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    hidden = _kill_mid_export(big_sqlite, out, "json")
    proc = subprocess.run([SQLSNAP, "prune", str(out) + "/", "--keep-last", "3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"removed {out / hidden[0]}: a temporary left by an export that was killed" in proc.stderr
    assert os.listdir(out) == []


def _handles_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has a handler for SIGTERM (its /proc status SigCgt mask)."""
    with open(f"/proc/{pid}/status") as fh:
        caught = next(int(line.split()[1], 16) for line in fh if line.startswith("SigCgt:"))
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.3, "0.15 after start"])
def test_early_signal_is_one_line_and_exit_130(big_sqlite: str, tmp_path: Path, sig: signal.Signals,
                                               delay: float | str) -> None:
    """Before: a traceback (SIGINT while Python imports the library) or a silent exit
    (SIGTERM before the CLI set its handler). The signal is sent ``delay`` after the
    process's first Python code of sqlsnap ran (it handles SIGTERM from then on: seen in
    /proc), i.e. while the library imports, or later while the export runs; before that,
    in the interpreter's own start-up (~30 ms), no program of Python's can answer."""
    proc = _start("export", big_sqlite, "-o", str(tmp_path / "x.json"))
    if isinstance(delay, str):  # a fixed time after the start: mid-import (failed before the fix)
        time.sleep(0.15)
    else:
        deadline = time.monotonic() + 30
        while not _handles_sigterm(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("Error: interrupted"), err
    assert [p for p in os.listdir(tmp_path) if p != "big"] == []
