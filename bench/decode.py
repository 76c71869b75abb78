#!/usr/bin/env python3
"""The binary COPY decoder on its own (sqlsnap/_pgdecode.c): MB of JSON written per CPU second.

    .venv/bin/python bench/decode.py [--db sqlsnap_bench] [--rows 50000] [--repeat 5]

For each table of the benchmark database (bench/run.py builds it), the first ``--rows`` rows
are read once as sqlsnap's binary COPY and kept in memory as CopyData messages; then
``_pgcopy.decode`` turns them into JSON lines ``--repeat`` times, timed with the process's CPU
clock (the best of the repeats: the least disturbed on a shared machine). No server, socket,
file or checksum is involved: what is left is the decoder's own cost, which
``bench/run.py``'s "MB/CPU s" (the whole client process) bounds from above.
"""

from __future__ import annotations

import argparse
import time

import psycopg

from sqlsnap.sources import pgbinary, postgresql
from sqlsnap.urls import parse_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlsnap_bench")
    parser.add_argument("--rows", type=int, default=50000, help="rows read from each table")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pgcopy = postgresql._PGCOPY
    if pgcopy is None:
        raise SystemExit("sqlsnap._pgcopy is not built")
    url = f"postgresql:///{args.db}"
    source = postgresql.PostgresSource(parse_url(url))
    source.open()
    try:
        tables = source.list_tables(None)
    finally:
        source.close()
    total_mb = total_cpu = 0.0
    print(f"{'table':<28} {'rows':>7} {'binary MB':>9} {'JSON MB':>8} {'CPU s':>7} {'MB JSON/CPU s':>13}")
    with psycopg.connect(url, options=postgresql.SESSION_OPTIONS) as conn:
        for table in tables:
            details = source.details[table.name]
            from_ = f"(SELECT * FROM ONLY {pgbinary.quote(table.schema)}.{pgbinary.quote(table.relname)} " \
                    f"LIMIT {args.rows}) t"
            plan = pgbinary.Plan(table, details["binary"], [p.kind for p in details["plans"]], from_, None)
            with conn.cursor().copy(plan.sql) as copy:
                messages = [bytes(m) for m in copy]
            best = float("inf")
            out = b""
            for _ in range(args.repeat):
                program = pgcopy.program(plan.codes, plan.ops)
                started = time.process_time()
                status, out, rows, reason = pgcopy.decode(program, messages)
                best = min(best, time.process_time() - started)
                if status != pgcopy.DONE:
                    raise SystemExit(f"{table.name}: {reason}")
            mb = len(out) / 1e6
            total_mb += mb
            total_cpu += best
            print(f"{table.name:<28} {rows:>7} {sum(map(len, messages)) / 1e6:>9.1f} {mb:>8.1f} {best:>7.3f} "
                  f"{mb / best if best else float('inf'):>13.0f}")
    print(f"{'all':<28} {'':>7} {'':>9} {total_mb:>8.1f} {total_cpu:>7.3f} {total_mb / total_cpu:>13.0f}")


if __name__ == "__main__":
    main()
