"""Every error path the CLI can reach ends in one ``Error:`` line and a documented exit code:
no traceback, no "internal error", nothing else on stderr. Each case runs the real command
in a process of its own."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sqlsnap.errors import EXIT_CODES
from tests._private_servers import free_port
from tests.conftest import MYSQL_HOST, MYSQL_PORT, PG_ADMIN_URL, SQLSNAP


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    conn = sqlite3.connect(d / "app.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO t VALUES (1, 'x')")
    conn.commit()
    conn.close()
    (d / "folder").mkdir()
    (d / "taken.json").write_text("{}")
    (d / "not-a-snapshot.json").write_text("hello")
    (d / "dangling").symlink_to(d / "nowhere")
    subprocess.run([SQLSNAP, "export", f"sqlite:///{d / 'app.db'}", "-q", "-o", str(d / "good.json")],
                   check=True)
    return d


def cases(d: Path) -> list[tuple[list[str], int]]:
    db = f"sqlite:///{d / 'app.db'}"
    port = free_port()
    return [
        (["export", "nosuch://x"], 2),
        (["export", "postgresql://u:pw@h:port/db"], 2),
        (["export", "postgresql://u:p@ss@h/db"], 2),
        (["export", "postgresql://u:p/ss@h/db"], 2),
        (["export", db, "--bogus"], 2),
        (["nosuch"], 2),
        (["export"], 2),
        (["export", db, "--jobs", "0"], 2),
        (["export", db, "--format", "jsonl", "-o", "-"], 2),
        (["export", db, "-o", str(d / "x.age")], 2),
        (["export", f"postgresql://postgres@127.0.0.1:{port}/db"], 3),
        (["export", f"mysql://root@127.0.0.1:{port}/db"], 3),
        (["export", f"{PG_ADMIN_URL}/sqlsnap_no_such_db", "-o", str(d / "n.json")], 4),
        (["export", f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/sqlsnap_no_such_db", "-o", str(d / "m.json")],
         4),
        (["export", f"sqlite:///{d / 'missing.db'}", "-o", str(d / "n.json")], 4),
        (["export", db, "--schema", "nosuch", "-o", str(d / "n.json")], 2),
        (["export", db, "-o", str(d / "no" / "such" / "x.json")], 6),
        (["export", db, "-o", str(d / "taken.json")], 6),
        (["export", db, "-o", str(d / "folder")], 6),
        (["export", db, "-o", str(d / "folder") + "/"], 6),
        (["export", db, "-o", str(d / "taken.json" / "x.json")], 6),
        (["export", db, "--format", "jsonl", "-o", str(d / "dangling")], 6),
        (["verify", str(d / "missing.json")], 4),
        (["verify", str(d / "not-a-snapshot.json")], 7),
        (["inspect", str(d / "missing.json")], 4),
        (["restore", str(d / "missing.json"), f"sqlite:///{d / 'r.db'}"], 4),
        (["prune", str(d / "folder") + "/"], 2),
        (["plan", "nosuch://x"], 2),
        (["demo", "--target", db, "--no-export"], 2),
    ]


def _check(args: list[str], code: int, proc: subprocess.CompletedProcess[str]) -> None:
    err = proc.stderr
    for noise in ("Traceback", "internal error", "Exception ignored"):
        assert noise not in err, (args, err)
    assert proc.returncode == code, (args, proc.returncode, err)
    assert code in EXIT_CODES
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), (args, err)


def test_every_error_path_is_one_line_with_its_exit_code(work: Path) -> None:
    for args, code in cases(work):
        proc = subprocess.run([SQLSNAP, *args], capture_output=True, text=True, timeout=120, cwd=work)
        _check(args, code, proc)


@pytest.mark.parametrize("command", [["verify", "{good}"], ["verify", "{good}", "--json"],
                                     ["inspect", "{good}"], ["export", "{db}", "-q", "-o", "-"],
                                     ["plan", "{db}"]])
def test_a_closed_pipe_is_quiet(work: Path, command: list[str]) -> None:
    """``sqlsnap verify ... | head``: the reader went away; no traceback, no internal error."""
    args = [a.format(good=work / "good.json", db=f"sqlite:///{work / 'app.db'}") for a in command]
    proc = subprocess.Popen([SQLSNAP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.close()  # as `head` does once it has its lines
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "internal error" not in err and "Exception ignored" not in err, err
    assert len(err.splitlines()) <= 1, err


def test_demo_without_the_driver_is_exit_5(work: Path) -> None:
    script = ("import sys; sys.modules['psycopg'] = None; sys.argv = ['sqlsnap', 'demo', '--target', "
              f"'{PG_ADMIN_URL}/sqlsnap_demo_nodriver', '--no-export']\n"
              "from sqlsnap.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    _check(["demo"], 5, proc)
    assert "pip install 'sqlsnap[postgresql]'" in proc.stderr


def test_verify_help_names_the_per_table_checksum_it_checks(work: Path) -> None:
    """`verify --help` (and docs/cli.md, generated from it) said per-table SHA-256 after the
    format had moved to XXH3-128: the help must name the algorithm snapshots are written with."""
    from sqlsnap.format import TABLE_CHECKSUM

    names = {"xxh128": "XXH3-128", "sha256": "SHA-256"}
    proc = subprocess.run([SQLSNAP, "verify", "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(proc.stdout.split())
    assert f"checksum ({names[TABLE_CHECKSUM]})" in text, text
    assert "per-table SHA-256" not in text and "table's SHA-256" not in text, text
