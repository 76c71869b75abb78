#!/usr/bin/env python3
"""Benchmark ``sqlsnap restore`` and ``sqlsnap inspect`` against the databases' own loaders.

Run from the repository root with sqlsnap's virtualenv::

    .venv/bin/python bench/restore.py [--scale 1] [--repeat 3]

What it does (bench/README.md, "Restore and inspect", says why):

1. builds the demo database at ``--scale`` in a new PostgreSQL database and exports it to a
   snapshot (``.json``) in a temporary folder;
2. **PostgreSQL**: ``sqlsnap restore`` into an empty database, against ``psql -f`` of a plain
   ``pg_dump --data-only`` of that restored database (the same rows), loaded with
   ``--single-transaction`` into a database holding the same schema (created beforehand, not
   timed). Target: at most 1.5x psql's time;
3. **SQLite**: ``sqlsnap restore`` into a new file, against ``sqlite3``'s own ``.import`` of
   the same rows as CSV files into the same schema, in one transaction. Target: at most 2x;
4. **inspect** of the snapshot: wall time and peak RSS. Target: peak RSS under 200 MB;
5. with ``--jobs N``: ``sqlsnap restore -j N`` against ``-j 1`` into PostgreSQL and MariaDB
   (``$SQLSNAP_BENCH_MYSQL``, database ``sqlsnap_brestore_mysql``), from the document and
   from a JSON Lines export of the same data, printing the median of the paired ratios
   (``--only " -j"`` times these alone);
6. drops every database it made. Each way runs ``--repeat`` times, interleaved; medians are
   printed, with the peak RSS from GNU ``/usr/bin/time -f %M`` (``wait4``'s would count the
   benchmark's own memory, see bench/run.py).

The databases are named ``sqlsnap_brestore_*``, apart from bench/run.py's ``sqlsnap_bench``.
The exit code is 0 whether targets pass or not: this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PG = os.environ.get("SQLSNAP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
VENV = Path(sys.executable).parent
SQLSNAP = str(VENV / "sqlsnap")
RSS_WRAPPER = ["/usr/bin/time", "-f", "%M"]
#: (way, reference, the most the way may take in multiples of the reference's time)
TARGETS = [("restore postgresql", "psql -f pg_dump", 1.5), ("restore sqlite", "sqlite3 .import csv", 2.0)]
INSPECT_RSS_LIMIT_MB = 200


def psql(database: str, *args: str) -> str:
    out = subprocess.run(["psql", f"{PG}/{database}", "-v", "ON_ERROR_STOP=1", "-qAt", *args],
                         check=True, capture_output=True, text=True)
    return out.stdout


def create_db(name: str) -> str:
    drop_db(name)
    psql("postgres", "-c", f'CREATE DATABASE "{name}"')
    return f"{PG}/{name}"


def drop_db(name: str) -> None:
    psql("postgres", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


MYSQL = os.environ.get("SQLSNAP_BENCH_MYSQL", "mysql://root@127.0.0.1:3306")
MYSQL_DB = "sqlsnap_brestore_mysql"


def drop_mysql() -> None:
    """The --jobs ways' MariaDB target, dropped before each run (restore creates it)."""
    subprocess.run(["mariadb", "-uroot", "-h127.0.0.1", "-e", f"DROP DATABASE IF EXISTS {MYSQL_DB}"],
                   check=True)


def measure(cmd: list[str], before: Callable[[], None] | None = None,
            stdin: str | None = None) -> tuple[float, int]:
    """(seconds, peak RSS in KB) of ``cmd``; ``before`` runs first, untimed."""
    if before:
        before()
    started = time.monotonic()
    proc = subprocess.run(RSS_WRAPPER + cmd, capture_output=True, text=True, input=stdin)
    seconds = time.monotonic() - started
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return seconds, int(proc.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=0,
                        help="also time restore --jobs N against --jobs 1, into PostgreSQL and MariaDB, "
                             "from the document and from a JSON Lines folder")
    parser.add_argument("--only", default="", help="time only the ways whose name contains this")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import sqlsnap
    from sqlsnap import demo
    from sqlsnap.targets import connect_for_write

    names = {k: f"sqlsnap_brestore_{k}" for k in ("src", "sqlsnap", "psql")}
    tmp = Path(tempfile.mkdtemp(prefix="sqlsnap-brestore-"))
    try:
        conn = connect_for_write(create_db(names["src"]))
        rows = sum(demo.build(conn, "postgresql", args.scale).values())
        conn.commit()
        conn.close()
        snap = tmp / "snap.json"
        sqlsnap.export(f"{PG}/{names['src']}", str(snap))
        folder = tmp / "snap-folder"
        if args.jobs:
            sqlsnap.export(f"{PG}/{names['src']}", str(folder), format="jsonl")
        print(f"demo scale {args.scale}: {rows:,} rows, snapshot {snap.stat().st_size / 1e6:.1f} MB")

        # The reference's input: the rows sqlsnap restores, dumped from a restored copy.
        sqlsnap.restore(str(snap), create_db(names["sqlsnap"]))
        psql(names["sqlsnap"], "-c", "DROP TABLE _sqlsnap_restore")
        schema = subprocess.run(["pg_dump", "--schema-only", f"{PG}/{names['sqlsnap']}"], check=True,
                                capture_output=True, text=True).stdout
        dump = tmp / "data.sql"
        subprocess.run(["pg_dump", "--data-only", "-f", str(dump), f"{PG}/{names['sqlsnap']}"], check=True)
        sqlite_ref = tmp / "ref.db"
        restored = tmp / "restored.db"
        sqlsnap.restore(str(snap), f"sqlite:///{restored}")
        csv_dir = tmp / "csv"
        csv_dir.mkdir()
        def sqlite3(*cmd: str) -> str:
            return subprocess.run(["sqlite3", str(restored), *cmd], check=True, capture_output=True,
                                  text=True).stdout

        tables = [t for t in sqlite3(".tables").split() if t != "_sqlsnap_restore"]
        sqlite_schema = "".join(s + ";\n" for s in sqlite3(".schema").split(";\n")
                                if s.strip() and "_sqlsnap_restore" not in s)
        for t in tables:
            subprocess.run(["sqlite3", "-csv", str(restored), f'SELECT * FROM "{t}"'], check=True,
                           stdout=(csv_dir / f"{t}.csv").open("w"))
        imports = "BEGIN;\n" + "".join(f".import --csv {csv_dir / t}.csv {t}\n" for t in tables) + "COMMIT;\n"

        def fresh_pg(name: str, with_schema: bool) -> Callable[[], None]:
            def run() -> None:
                create_db(name)
                if with_schema:
                    subprocess.run(["psql", f"{PG}/{name}", "-q", "-v", "ON_ERROR_STOP=1"], input=schema,
                                   text=True, check=True, capture_output=True)
            return run

        def fresh_file(path: Path, sql: str | None) -> Callable[[], None]:
            def run() -> None:
                path.unlink(missing_ok=True)
                if sql:
                    subprocess.run(["sqlite3", str(path)], input=sql, text=True, check=True)
            return run

        target_db = tmp / "target.db"
        ways: dict[str, tuple[list[str], Callable[[], None], str | None]] = {
            "restore postgresql": ([SQLSNAP, "restore", "-q", str(snap), f"{PG}/{names['sqlsnap']}"],
                                   fresh_pg(names["sqlsnap"], False), None),
            "psql -f pg_dump": (["psql", f"{PG}/{names['psql']}", "-q", "-v", "ON_ERROR_STOP=1",
                                 "--single-transaction", "-f", str(dump)],
                                fresh_pg(names["psql"], True), None),
            "restore sqlite": ([SQLSNAP, "restore", "-q", str(snap), f"sqlite:///{target_db}"],
                               fresh_file(target_db, None), None),
            "sqlite3 .import csv": (["sqlite3", str(sqlite_ref)], fresh_file(sqlite_ref, sqlite_schema),
                                    imports),
            "inspect": ([SQLSNAP, "inspect", "--format", "json", str(snap)], lambda: None, None),
        }
        if args.jobs:
            for layout, path in (("json", snap), ("jsonl", folder)):
                for jobs in (1, args.jobs):
                    ways[f"pg {layout} -j{jobs}"] = (
                        [SQLSNAP, "restore", "-q", "-j", str(jobs), str(path), f"{PG}/{names['sqlsnap']}"],
                        fresh_pg(names["sqlsnap"], False), None)
                    ways[f"mysql {layout} -j{jobs}"] = (
                        [SQLSNAP, "restore", "-q", "-j", str(jobs), str(path), f"{MYSQL}/{MYSQL_DB}"],
                        drop_mysql, None)
        if args.only:
            ways = {w: v for w, v in ways.items() if args.only in w}
        results: dict[str, list[tuple[float, int]]] = {w: [] for w in ways}
        for round_ in range(args.repeat):
            order = list(ways)
            order = order[round_ % len(order):] + order[:round_ % len(order)]
            for way in order:
                cmd, before, stdin = ways[way]
                results[way].append(measure(cmd, before, stdin))
        print(f"{'way':<22} {'median s':>9} {'fastest s':>9} {'peak RSS MB':>11}")
        medians = {}
        for way, runs in results.items():
            medians[way] = statistics.median(s for s, _ in runs)
            fastest = min(s for s, _ in runs)
            peak = max(kb for _, kb in runs) / 1024
            print(f"{way:<22} {medians[way]:>9.2f} {fastest:>9.2f} {peak:>11.0f}")
        for way, ref, limit in TARGETS if not args.only else []:
            ratio = max(medians[way] / medians[ref],
                        min(s for s, _ in results[way]) / min(s for s, _ in results[ref]))
            print(f"{way} / {ref}: {ratio:.2f}x (target <= {limit}x) {'PASS' if ratio <= limit else 'FAIL'}")
        for way in [w for w in results if w.endswith(f"-j{args.jobs}") and args.jobs > 1]:
            one = way.rsplit("-j", 1)[0] + "-j1"
            paired = [a / b for (a, _), (b, _) in zip(results[way], results[one], strict=True)]
            print(f"{way} / {one}: median of paired ratios {statistics.median(paired):.2f} "
                  f"({', '.join(f'{r:.2f}' for r in paired)})")
        if "inspect" not in results:
            return
        peak_mb = max(kb for _, kb in results["inspect"]) / 1024
        print(f"inspect peak RSS: {peak_mb:.0f} MB (target < {INSPECT_RSS_LIMIT_MB} MB) "
              f"{'PASS' if peak_mb < INSPECT_RSS_LIMIT_MB else 'FAIL'}")
    finally:
        for name in names.values():
            drop_db(name)
        if args.jobs:
            drop_mysql()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
