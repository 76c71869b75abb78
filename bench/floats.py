#!/usr/bin/env python3
"""Floats in the binary COPY (issue 12): read as stored and written in C (sqlsnap/_pgfloat.c),
against the server's text of them (``col::text``, what sqlsnap asked for before, and still
asks servers before PostgreSQL 12 for).

    .venv/bin/python bench/floats.py [--rows 300000] [--rounds 5]

A float-heavy table (an int, four float8, two float4 and a float8[3] a row, values over
the whole range) is built in a database of its own, dropped at the end. Each round reads it
both ways, in alternating order, with the statement sqlsnap's reader would send:

* **server CPU**: the backend's own user+system time for the COPY, from /proc/<pid>/stat
  (the server must run on this machine), the client only collecting the messages;
* **client decoding**: ``_pgcopy.decode`` over those messages, CPU time of this process (the
  best of three: the least disturbed on a shared machine), as MB of JSON written per CPU
  second. Both ways must write the same bytes (checked).

Medians over the rounds, and the median of each round's ratio (binary / text).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from typing import Any

import psycopg

from sqlsnap.sources import pgbinary, postgresql
from sqlsnap.urls import parse_url

TABLE = """CREATE TABLE floats AS SELECT g AS id,
  (random() - 0.5) * power(10::float8, (random() * 40 - 20)::int) AS a,
  (random() - 0.5) * power(10::float8, (random() * 600 - 300)::int) AS b,
  random() * 1000 AS c, round(random() * 1e6) / 100 AS d,
  ((random() - 0.5) * power(10::float8, (random() * 20 - 10)::int))::float4 AS e,
  (random() * 100)::float4 AS f, ARRAY[random(), random() * 1e10, -random() / 1e10] AS g
FROM generate_series(1, %s) g"""


def backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read(conn: Any, pid: int, sql: str) -> tuple[float, list[bytes]]:
    before = backend_cpu(pid)
    with conn.cursor().copy(sql) as copy:
        messages = [bytes(m) for m in copy]
    time.sleep(0.05)  # the backend's last tick
    return backend_cpu(pid) - before, messages


def decode(plan: pgbinary.Plan, messages: list[bytes]) -> tuple[float, bytes]:
    pgcopy = postgresql._PGCOPY
    best, out = float("inf"), b""
    for _ in range(3):
        program = pgcopy.program(plan.codes, plan.ops)
        started = time.process_time()
        status, out, _, reason = pgcopy.decode(program, messages)
        best = min(best, time.process_time() - started)
        if status != pgcopy.DONE:
            raise SystemExit(reason)
    return best, out


def plans(url: str) -> dict[str, pgbinary.Plan]:
    """The statements and programs of sqlsnap's reader, for a server of today and (text) for
    one before PostgreSQL 12."""
    out = {}
    for way, version in (("text", pgbinary.SHORTEST_FLOATS - 1), ("binary", None)):
        source = postgresql.PostgresSource(parse_url(url))
        source.open()
        try:
            if version is not None:
                source._version_num = version  # noqa: SLF001 - as a server before 12 is read
            table = source.list_tables(None)[0]
            details = source.details[table.name]
        finally:
            source.close()
        out[way] = pgbinary.Plan(table, details["binary"], [p.kind for p in details["plans"]],
                                 'ONLY "public"."floats"', None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if postgresql._PGCOPY is None:
        raise SystemExit("sqlsnap._pgcopy is not built")
    name = f"sqlsnap_bench_floats_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("dbname=postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql:///{name}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLE, (args.rows,))
            conn.execute("VACUUM ANALYZE floats")
        ways = plans(url)
        assert "::text" in ways["text"].sql and "::text" not in ways["binary"].sql
        results: dict[str, dict[str, list[float]]] = {w: {"server": [], "client": [], "mb": []} for w in ways}
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        with psycopg.connect(url, options=postgresql.SESSION_OPTIONS) as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            read(conn, pid, ways["binary"].sql)  # warm-up: caches
            for r in range(args.rounds):
                outputs = {}
                for way in (("text", "binary") if r % 2 == 0 else ("binary", "text")):
                    server, messages = read(conn, pid, ways[way].sql)
                    client, outputs[way] = decode(ways[way], messages)
                    results[way]["server"].append(server)
                    results[way]["client"].append(client)
                    results[way]["mb"].append(len(outputs[way]) / 1e6)
                if outputs["text"] != outputs["binary"]:
                    raise SystemExit("the two ways wrote different JSON")
                text, binary = results["text"], results["binary"]
                print(f"round {r + 1}: server CPU text {text['server'][-1]:.2f} s, binary "
                      f"{binary['server'][-1]:.2f} s; decoding text {text['client'][-1]:.3f} s, "
                      f"binary {binary['client'][-1]:.3f} s")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        mb = results["text"]["mb"][0]
        print(f"{args.rows} rows, {mb:.1f} MB of JSON")
        for way, res in results.items():
            client = statistics.median(res["client"])
            print(f"{way:>6}: server CPU {statistics.median(res['server']):.2f} s, client decoding "
                  f"{client:.3f} s = {mb / client:.0f} MB JSON/CPU s")
        for key, label in (("server", "server CPU"), ("client", "client decoding CPU")):
            ratios = [b / t for b, t in zip(results["binary"][key], results["text"][key])]
            print(f"{label}, binary / text: median of rounds {statistics.median(ratios):.2f} "
                  f"(rounds {', '.join(f'{x:.2f}' for x in ratios)})")
    finally:
        with psycopg.connect("dbname=postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
