#!/usr/bin/env python3
"""Peak memory of exporting one huge value, as a multiple of the value's size.

Run from the repository root with sqlsnap's virtualenv::

    .venv/bin/python bench/huge_value.py [--mib 200] [--repeat 2] [--dialects postgresql,sqlite]
        [--mysql-url mysql://root@127.0.0.1:PORT/mysql]

For each dialect it makes a database holding one table with one row whose text column holds
``--mib`` MiB of ASCII (PostgreSQL: database ``sqlsnap_huge``, dropped at the end; SQLite: a
file in a temporary folder), then runs ``sqlsnap export URL -o out.json`` as a child process
under GNU ``/usr/bin/time -f %M`` ``--repeat`` times (and, on PostgreSQL, once per read path:
the binary COPY default and ``--no-binary-copy``), and prints the peak RSS over the value's
size. Issue "Trust under faults" asks for at most about 1.5x (bench/README.md, "One huge
value"). The exit code is 0 whether it passes or not: this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

VENV = Path(sys.executable).parent
SQLSNAP = str(VENV / "sqlsnap")
MIB = 1024 * 1024
TARGET = 1.5
PG_DB = "sqlsnap_huge"


def psql(database: str, sql: str) -> None:
    subprocess.run(["psql", "-d", database, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
                   check=True, capture_output=True, text=True)


def mysql_sql(url: str, statements: list[str]) -> None:
    from urllib.parse import urlsplit

    import pymysql

    parts = urlsplit(url)
    conn = pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username or "root",
                           password=parts.password or "")
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.commit()
    finally:
        conn.close()


def peak_rss(args: list[str]) -> int:
    """Peak RSS in bytes of ``sqlsnap ARGS`` (GNU time writes KiB on the last stderr line)."""
    done = subprocess.run(["/usr/bin/time", "-f", "%M", SQLSNAP, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"sqlsnap {' '.join(args)} failed: {done.stderr.strip()}")
    return int(done.stderr.strip().splitlines()[-1]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=200, help="size of the value in MiB")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dialects", default="postgresql,sqlite")
    parser.add_argument("--mysql-url", metavar="URL",
                        help="also MySQL/MariaDB: a server whose max_allowed_packet exceeds the value "
                             "(the shared one's 16 MiB does not: start a throwaway instance with "
                             "--max-allowed-packet=1G); the database sqlsnap_huge is made and dropped")
    opts = parser.parse_args()
    size = opts.mib * MIB
    dialects = opts.dialects.split(",")
    print(f"one text value of {opts.mib} MiB; load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="sqlsnap-huge-") as tmp:
        ways: list[tuple[str, list[str]]] = []
        if "postgresql" in dialects:
            psql("postgres", f"DROP DATABASE IF EXISTS {PG_DB}")
            psql("postgres", f"CREATE DATABASE {PG_DB}")
            psql(PG_DB, f"CREATE TABLE t (id int PRIMARY KEY, v text); "
                        f"INSERT INTO t VALUES (1, repeat('x', {size}))")
            url = f"postgresql:///{PG_DB}"
            ways += [("postgresql (binary COPY)", [url]),
                     ("postgresql --no-binary-copy", [url, "--no-binary-copy"])]
        if "sqlite" in dialects:
            path = Path(tmp) / "huge.db"
            with sqlite3.connect(path) as conn:
                conn.execute("CREATE TABLE t (id integer PRIMARY KEY, v text)")
                conn.execute("INSERT INTO t VALUES (1, ?)", ("x" * size,))
            ways.append(("sqlite", [f"sqlite:///{path}"]))
        if opts.mysql_url:
            mysql_sql(opts.mysql_url, ["DROP DATABASE IF EXISTS sqlsnap_huge", "CREATE DATABASE sqlsnap_huge",
                                       "CREATE TABLE sqlsnap_huge.t (id int PRIMARY KEY, v longtext)",
                                       f"INSERT INTO sqlsnap_huge.t VALUES (1, REPEAT('x', {size}))"])
            ways.append(("mysql", [opts.mysql_url.rsplit("/", 1)[0] + "/sqlsnap_huge"]))
        try:
            for name, args in ways:
                peaks = []
                for i in range(opts.repeat):
                    out = Path(tmp) / f"out{i}.json"
                    peaks.append(peak_rss(["export", *args, "-o", str(out), "-q", "--force"]))
                    out.unlink()
                    Path(f"{out}.sha256").unlink()
                peak = statistics.median(peaks)
                verdict = "PASS" if peak / size <= TARGET else "FAIL"
                print(f"  {name:30} peak RSS {peak / MIB:7.1f} MiB = {peak / size:.2f}x the value "
                      f"(runs: {', '.join(f'{p / MIB:.0f}' for p in peaks)} MiB)  {verdict} (<= {TARGET}x)")
        finally:
            if "postgresql" in dialects:
                psql("postgres", f"DROP DATABASE IF EXISTS {PG_DB}")
            if opts.mysql_url:
                mysql_sql(opts.mysql_url, ["DROP DATABASE IF EXISTS sqlsnap_huge"])
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
