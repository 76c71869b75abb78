#!/usr/bin/env python3
"""Benchmark one tenant's segment (``sqlsnap export --where``) against the full export.

Run from the repository root with sqlsnap's virtualenv::

    .venv/bin/python bench/segment.py [--scale 100] [--repeat 5] [--companies 3] [--keep] [--as-built-only]

What it does (bench/README.md, "Segments: one tenant against the full export", says why):

1. byte-compiles the installed sqlsnap package (as ``pip install`` does), builds the demo
   database at ``--scale`` in PostgreSQL database ``--db`` (reused when its row counts are
   exactly the demo's at that scale), then ``VACUUM ANALYZE``;
2. **as built** (the demo declares its foreign keys but indexes only primary and unique keys,
   like PostgreSQL itself): ``--repeat`` paired rounds of ``sqlsnap export URL`` (the full
   export) and ``sqlsnap export URL --where "companies.id in (1, ..., N)"`` (a tenant of
   ``--companies`` companies: 3 of the 300 at scale 100 hold 1% of the rows), the order
   alternating from round to round; each as a child process writing a file;
3. **foreign keys indexed** (as an application's schema has them, and as MySQL/InnoDB makes
   them by itself): an index on each foreign key's columns, then the same rounds;
4. prints, per phase, the medians, the tenant's time over the full export's (the median of the
   rounds' ratios, and the ratio of the medians: the worse counts), the peak RSS of each (GNU
   ``/usr/bin/time -f %M``) and the machine's load average. Target: at most 0.10 for a tenant
   of 1% of the rows; peak RSS no higher than the full export's. For information, each round
   also runs an export of one 15-row table (``fixed``: what every export pays, whatever it
   reads), and the run starts with the time to read every table's heap once with plain scans
   (the floor of a closure computed without indexes).

The database is dropped at the end unless ``--keep``. The exit code is 0 whether the target
passes or not: this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV = Path(sys.executable).parent
SQLSNAP = str(VENV / "sqlsnap")
RSS_WRAPPER = ["/usr/bin/time", "-f", "%M"]
TARGET_RATIO = 0.10
#: The third way of each round: an export of one 15-row table (the command's fixed cost).
FIXED = "fixed"
#: An index on every foreign key's columns of schema public, named after its constraint.
FK_INDEXES = """
SELECT format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (%s)', c.conname || '_idx', n.nspname, t.relname,
              string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord))
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
WHERE c.contype = 'f' AND n.nspname = 'public' GROUP BY c.conname, n.nspname, t.relname
"""


def psql(database: str, sql: str) -> str:
    out = subprocess.run(["psql", "-d", database, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout


def prepare(db: str, scale: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from sqlsnap import demo

    expected = demo.table_row_counts(scale)
    exists = psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{db}'").strip() == "1"
    if exists:
        counts = {t: int(psql(db, f'SELECT count(*) FROM "{t}"')) for t in expected
                  if psql(db, f"SELECT to_regclass('public.\"{t}\"') IS NOT NULL").strip() == "t"}
        if counts == expected:
            print(f"{db}: holds the demo at scale {scale}; reused")
            return
        psql("postgres", f'DROP DATABASE "{db}" WITH (FORCE)')
    print(f"{db}: building the demo at scale {scale}")
    subprocess.run([SQLSNAP, "demo", "--target", f"postgresql:///{db}", "--scale", str(scale), "--no-export",
                    "-q"], check=True)


def scan_floor(db: str) -> float:
    """Seconds to read every table's heap once, one plain sequential scan each on one
    connection (``WHERE tableoid = 0``: no index serves it, nothing is returned), the median
    of three: what a closure that reads each table once cannot go below without indexes."""
    tables = psql(db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split()
    script = "SET max_parallel_workers_per_gather = 0;\n" + "".join(
        f"SELECT count(*) FROM \"{t}\" WHERE tableoid = 0;\n" for t in tables)
    runs = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run(["psql", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt"], input=script, check=True,
                       capture_output=True, text=True)
        runs.append(time.monotonic() - started)
    return statistics.median(runs)


def drop_fk_indexes(db: str) -> None:
    names = psql(db, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                     "AND indexname LIKE '%\\_fkey\\_idx'").split()
    for name in names:
        psql(db, f'DROP INDEX "{name}"')


def measure(cmd: list[str], out: Path) -> tuple[float, int]:
    """(seconds, peak RSS in KB) of ``cmd``, which writes ``out`` (deleted afterwards)."""
    subprocess.run(["sync"], check=True)
    started = time.monotonic()
    proc = subprocess.run(RSS_WRAPPER + cmd, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    for p in (out, out.with_name(out.name + ".sha256")):
        p.unlink(missing_ok=True)
    return seconds, int(proc.stderr.strip().splitlines()[-1])


def phase(title: str, url: str, where: str, repeat: int, tmp: Path) -> dict[str, object]:
    full_out, tenant_out, fixed_out = tmp / "full.json", tmp / "tenant.json", tmp / "fixed.json"
    ways = {
        "full": [SQLSNAP, "export", url, "-o", str(full_out), "-q"],
        "tenant": [SQLSNAP, "export", url, "--where", where, "-o", str(tenant_out), "-q"],
        # What every export pays whatever it reads: start the command, import, connect, list,
        # lock and reflect the 16 tables, take the snapshot, write, checksum, rename, exit.
        FIXED: [SQLSNAP, "export", url, "--tables", "ai_prompts", "-o", str(fixed_out), "-q"],
    }
    outputs = {"full": full_out, "tenant": tenant_out, FIXED: fixed_out}
    # The tenant's share of the rows, from its metadata (one untimed run also warms the caches).
    subprocess.run(ways["tenant"], check=True)
    meta = json.loads(tenant_out.read_bytes())
    measure(ways["full"], full_out)
    tenant_out.unlink()
    tenant_out.with_name(tenant_out.name + ".sha256").unlink()
    runs: dict[str, list[tuple[float, int]]] = {way: [] for way in ways}
    loads = []
    for round_ in range(repeat):
        order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
        for way in order:
            runs[way].append(measure(ways[way], outputs[way]))
        loads.append(os.getloadavg()[0])
    ratios = [t / f for (t, _), (f, _) in zip(runs["tenant"], runs["full"])]
    med = {w: statistics.median(s for s, _ in r) for w, r in runs.items()}
    peak = {w: max(kb for _, kb in r) / 1024 for w, r in runs.items()}
    ratio = max(statistics.median(ratios), med["tenant"] / med["full"])
    print(f"\n{title}")
    print(f"  tenant: {meta['metadata']['total_rows']:,} rows ({where})")
    print(f"  {'way':<8} {'median s':>9} {'fastest s':>9} {'peak RSS MB':>11}   rounds (s)")
    for way, r in runs.items():
        print(f"  {way:<8} {med[way]:>9.2f} {min(s for s, _ in r):>9.2f} {peak[way]:>11.0f}   "
              + " ".join(f"{s:.2f}" for s, _ in r))
    print(f"  tenant / full: {ratio:.3f} (rounds: {' '.join(f'{x:.3f}' for x in ratios)}; target <= "
          f"{TARGET_RATIO}) {'PASS' if ratio <= TARGET_RATIO else 'FAIL'}")
    print(f"  peak RSS tenant / full: {peak['tenant'] / peak['full']:.2f} "
          f"{'PASS' if peak['tenant'] <= peak['full'] else 'FAIL'}")
    fixed = statistics.median(a / b for (a, _), (b, _) in zip(runs[FIXED], runs["full"]))
    print(f"  for information, {FIXED} / full: {fixed:.3f} (the part of the ratio no segment can save)")
    print(f"  load average (1 min) after each round: {' '.join(f'{x:.1f}' for x in loads)} (2 vCPUs)")
    return {"ratio": ratio, "rounds": ratios, "median": med, "peak_mb": peak, "loads": loads,
            "tenant_rows": meta["metadata"]["total_rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5, help="paired rounds per phase")
    parser.add_argument("--companies", type=int, default=3, help="companies in the tenant (3 of 300: 1%%)")
    parser.add_argument("--db", default="sqlsnap_bsegment")
    parser.add_argument("--keep", action="store_true", help="keep the database (reused by the next run)")
    parser.add_argument("--as-built-only", action="store_true",
                        help="skip the phase with foreign keys indexed")
    args = parser.parse_args()
    # Byte-compiled, as an installed package is: this machine sets PYTHONDONTWRITEBYTECODE, and
    # compiling the source in every run added about 0.1 s to each (bench/README.md, run K).
    import sqlsnap

    compileall.compile_dir(Path(sqlsnap.__file__).parent, quiet=1)
    prepare(args.db, args.scale)
    drop_fk_indexes(args.db)
    psql(args.db, "VACUUM ANALYZE")
    url = f"postgresql:///{args.db}"
    where = f"companies.id in ({', '.join(str(i + 1) for i in range(args.companies))})"
    tmp = Path(tempfile.mkdtemp(prefix="sqlsnap-bsegment-"))
    try:
        total = sum(int(psql(args.db, f'SELECT count(*) FROM "{t}"')) for t in
                    psql(args.db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split())
        print(f"scale {args.scale}: {total:,} rows")
        print(f"every table's heap read once, one connection (plain scans): {scan_floor(args.db):.2f} s")
        phase("as built (primary and unique keys indexed)", url, where, args.repeat, tmp)
        if args.as_built_only:
            return
        for statement in psql(args.db, FK_INDEXES).splitlines():
            psql(args.db, statement)
        psql(args.db, "ANALYZE")
        phase("foreign keys indexed", url, where, args.repeat, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if args.keep:
            drop_fk_indexes(args.db)
        else:
            psql("postgres", f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
