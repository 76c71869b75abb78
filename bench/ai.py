"""Time from a snapshot to the first answered query (cold: load into DuckDB, then query;
cached: the DuckDB file reused) and peak memory while loading.

    .venv/bin/python bench/ai.py --scale 100      # ~1M rows, ~1 GB of JSON (the issue's size)
    .venv/bin/python bench/ai.py --scale 10       # a quick look

Builds the demo database in SQLite at ``--scale`` (in a temporary folder), exports it as a
``.json.zst`` document, then runs ``sqlsnap query`` as a child process under GNU
``/usr/bin/time -f %M`` (peak RSS: ``wait4`` would report the benchmark's own memory carried
into the forked child, see bench/README.md). Prints one line per run and a summary line.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQLSNAP = str(Path(sys.executable).with_name("sqlsnap"))
QUERY = "select severity, count(*) from incidents group by 1 order by 2 desc"


def timed(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KB) of ``args``."""
    started = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *args], capture_output=True, text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return seconds, int(proc.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--folder", help="Work here instead of a temporary folder (kept).")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import sqlsnap
    from sqlsnap import demo
    from sqlsnap.targets import connect_for_write

    with tempfile.TemporaryDirectory(prefix="sqlsnap-ai-bench-") as tmp:
        folder = Path(args.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        db, snapshot = folder / "demo.db", folder / "demo.json.zst"
        if not snapshot.exists():
            started = time.monotonic()
            conn = connect_for_write(f"sqlite:///{db}")
            try:
                rows = sum(demo.build(conn, "sqlite", args.scale).values())
            finally:
                conn.close()
            sqlsnap.export(f"sqlite:///{db}", str(snapshot))
            took = time.monotonic() - started
            print(f"built and exported scale {args.scale}: {rows:,} rows in {took:.1f} s")
        size = snapshot.stat().st_size
        for cached in folder.glob(".demo.json.zst.*.duckdb"):
            cached.unlink()
        cold, cold_kb = timed([SQLSNAP, "query", str(snapshot), QUERY])
        warm, warm_kb = timed([SQLSNAP, "query", str(snapshot), QUERY])
        duck = next(folder.glob(".demo.json.zst.*.duckdb"))
        print(f"cold (load + query): {cold:.2f} s, peak RSS {cold_kb / 1024:.0f} MB")
        print(f"cached (query only): {warm:.2f} s, peak RSS {warm_kb / 1024:.0f} MB")
        print(f"ai: scale {args.scale}, snapshot {size / 1e6:.1f} MB (zstd), DuckDB file "
              f"{duck.stat().st_size / 1e6:.1f} MB; first answer cold {cold:.2f} s, cached {warm:.2f} s; "
              f"peak RSS while loading {cold_kb / 1024:.0f} MB; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
