#!/usr/bin/env python3
"""Benchmark ``sqlsnap export`` against PostgreSQL's own ways of getting data out.

Run from the repository root with sqlsnap's virtualenv (standard library only otherwise)::

    .venv/bin/python bench/run.py [--scale 100] [--repeat 3] [--skip-build] [--db sqlsnap_bench]
    .venv/bin/python bench/run.py --scales 25,100 --skip-build     # is memory flat?
    .venv/bin/python bench/run.py --skip-build --baseline REV      # also the code of REV (a refactor)

What it does (see bench/README.md for why):

1. builds the bundled sample database (``sqlsnap demo --no-export``) at ``--scale``, or, with
   ``--skip-build``, reuses it when its row counts are exactly the demo's at that scale;
2. runs ``VACUUM ANALYZE``; then runs every *way* of exporting once as an uncounted warm-up
   round (page cache, catalog caches) and ``--repeat`` counted rounds, interleaved round
   robin (each round starts one way later than the previous one), so that noise from other
   work on the machine falls on every way alike; before each run it waits (``--settle``)
   for a quiet moment on the machine. sqlsnap runs from a copy of its package taken at
   start (``--no-freeze`` to disable), so every round measures the same code while the
   working tree is edited. With ``--baseline REV`` the sqlsnap code of git revision REV is
   measured too, in the same rounds, as ways named ``<way>@base``;
3. measures each way as a child process: wall time; from ``os.wait4`` the user+sys CPU of
   the child and every descendant it waited for (pg_dump's workers); its peak RSS from
   ``/usr/bin/time -f %M`` (see RSS_WRAPPER: wait4's own ``ru_maxrss`` is useless here); the
   CPU of the PostgreSQL backends serving the benchmark database, sampled from /proc; and
   the machine's busy CPU that was neither (other work on a shared machine);
4. prints medians, the ratio to the ``psql`` reference and PASS/FAIL per target; writes
   every measurement to ``--json FILE``. The exit code is 0 even when a target fails: this
   is a report, not a gate. With ``--baseline``, it also prints each sqlsnap way's time over
   its ``@base`` way's (for information).

The references: ``psql`` running ``COPY (SELECT row_to_json(r.*) FROM t r) TO STDOUT`` for
every table on one connection is the practical limit for JSON out of PostgreSQL (one
server process builds JSON; DESIGN.md "Performance principles"); ``pg_dump -Fd -j 2``
is the raw read without JSON, with two connections.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import importlib.util
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------

DEFAULT_SCALE = 100
DEFAULT_REPEAT = 3
DEFAULT_DB = "sqlsnap_bench"
#: All tools connect the same way: libpq over the local Unix socket, peer authentication.
URL_TEMPLATE = "postgresql:///{db}"
#: The database ``psql`` connects to for administration (existence checks, DROP).
ADMIN_DB = "postgres"
#: sqlsnap exports schema public by default; the references read the same tables.
SCHEMA = "public"
#: For ``sqlsnap export --anonymize``: a fixed key, so every run does the same work.
HASH_KEY = "sqlsnap-bench-fixed-test-key-not-a-secret-0123456789"
PG_DUMP_JOBS = 2
#: CSV COPY with a quote and delimiter that never occur passes row_to_json's output byte
#: for byte (text COPY would double every backslash; ECOSYSTEM.md section 13).
COPY_OPTIONS = r"FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02'"

#: Targets (issue 12: binary COPY decoded in C; they replace the earlier 0.70x and 1.00x wall
#: targets, which were set while the server still built the JSON).
TARGET_DEFAULT_VS_PSQL = 0.55
TARGET_JOBS1_VS_PSQL = 0.85
TARGET_PEAK_RSS_MB = 100.0
TARGET_ANONYMIZE_VS_DEFAULT = 1.3
#: The server CPU of the default export over pg_dump's and over psql's (row_to_json), for the
#: same tables: the export should be the lightest reader the database has.
TARGET_SERVER_VS_PG_DUMP = 1.0
TARGET_SERVER_VS_PSQL = 0.6
#: --scales: the peak RSS at the largest scale may exceed the smallest scale's by this share.
FLAT_RSS_TOLERANCE = 0.20

#: ``sqlsnap demo`` is being finished by someone else: retry a failed build a few times.
BUILD_ATTEMPTS = 3
BUILD_RETRY_WAIT_S = 180
#: Peak RSS comes from GNU time, not from os.wait4: Linux records the pre-exec memory of a
#: forked child in its ru_maxrss (exec_mmap keeps the old mm's high-water mark), so wait4
#: from this Python process reports at least this process's own RSS (~29 MB; psql's real
#: peak is ~9 MB). GNU time forks from a ~2 MB process, so its %M is the command's own peak.
#: CPU still comes from wait4 on GNU time, which includes the command and its children.
RSS_WRAPPER = "/usr/bin/time"
#: Starts sqlsnap's CLI like its console script does.
SQLSNAP_MAIN = "from sqlsnap.cli import main; main(prog_name='sqlsnap')"
#: Before each measured run, wait (up to --settle seconds) until the rest of the machine
#: uses less than this many cores, sampled over QUIET_SAMPLE_S.
QUIET_BUSY_CORES = 0.5
QUIET_SAMPLE_S = 1.0
DEFAULT_SETTLE_S = 20.0
#: How often the PostgreSQL backends' CPU is sampled from /proc while a way runs.
SERVER_SAMPLE_S = 0.1

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KIB = 1024
MIB = 1024 * 1024

WAY_PSQL = "psql"
WAY_PG_DUMP = "pg_dump"
WAY_DEFAULT = "sqlsnap"
WAY_JOBS1 = "sqlsnap --jobs 1"
WAY_PYTHON = "sqlsnap --no-server-json"
WAY_SERVER_JSON = "sqlsnap --no-binary-copy"
WAY_JSONL = "sqlsnap --format jsonl"
WAY_ANONYMIZE = "sqlsnap --anonymize"
WAY_ZSTD = "sqlsnap -o .json.zst"
#: Ways measured in --scales mode (memory at each scale; psql for the time ratio).
SCALES_WAYS = (WAY_PSQL, WAY_DEFAULT, WAY_JOBS1)
#: --baseline: the baseline code's ways are the current ones' names with this suffix.
BASELINE_SUFFIX = "@base"
#: The package inside the repository, as ``git archive`` takes it, and the optional C reader
#: (built by setup.py, not in git) that the baseline needs too: without it sqlsnap falls back
#: to its Python COPY loop, which is slower, and the comparison would measure that instead.
REPO_PACKAGE = "src/sqlsnap"
PGCOPY_SOURCE = "_pgcopy.c"
#: Every C source of the extension: the module is reused only when all of them are unchanged.
PGCOPY_SOURCES = (PGCOPY_SOURCE, "_pgdecode.c", "_pgdecode.h", "_pgfloat.c", "_pgfloat.h",
                  "_pgfloat_tables.h")
PGCOPY_BUILT = "_pgcopy*.so"


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def url_for(db: str) -> str:
    return URL_TEMPLATE.format(db=db)


@dataclass(frozen=True)
class Sqlsnap:
    """How to start sqlsnap: the command and the environment it needs."""

    argv: tuple[str, ...]
    env: dict[str, str]
    #: Where the code under test is, and a digest of its .py files (ties results to code).
    source: str
    code_sha256: str

    def command(self, *args: str) -> list[str]:
        return [*self.argv, *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), capture_output=True, text=True,
                              env={**os.environ, **self.env})


def code_digest(package: Path) -> str:
    """SHA-256 of the package's code: its Python files and its C extension (sources and the
    built module), which is where the PostgreSQL export spends its client time."""
    digest = hashlib.sha256()
    files = [p for pattern in ("*.py", "*.c", "*.h", "*.so") for p in package.rglob(pattern)]
    for path in sorted(files):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def installed_package() -> Path:
    """The folder of the sqlsnap importable by this interpreter (sqlsnap's venv)."""
    spec = importlib.util.find_spec("sqlsnap")
    if spec is None or spec.origin is None:
        sys.exit("sqlsnap is not importable: run this with sqlsnap's virtualenv "
                 "(.venv/bin/python bench/run.py)")
    return Path(spec.origin).parent


def freeze(package: Path, into: Path) -> Path:
    """Copy ``package`` to ``into``/sqlsnap and byte-compile it; return the copy.

    Byte-compiled as ``pip install`` compiles an installed package: with
    PYTHONDONTWRITEBYTECODE set (these machines set it), every run would otherwise compile
    sqlsnap's source again, 0.1 s of each run.
    """
    frozen = into / "sqlsnap"
    shutil.copytree(package, frozen, ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(frozen, quiet=1)
    return frozen


def frozen_sqlsnap(frozen: Path, source: str) -> Sqlsnap:
    """Run the frozen copy ``frozen`` (a folder named sqlsnap) through PYTHONPATH."""
    return Sqlsnap((sys.executable, "-c", SQLSNAP_MAIN), {"PYTHONPATH": str(frozen.parent)},
                   source, code_digest(frozen))


def locate_sqlsnap(freeze_into: Path | None) -> Sqlsnap:
    """The sqlsnap importable by this interpreter (sqlsnap's venv), frozen if asked.

    Frozen: the package is copied into ``freeze_into`` and run from there with PYTHONPATH,
    so every round measures the same code even while the working tree is being edited.
    """
    package = installed_package()
    if freeze_into is None:
        beside = Path(sys.executable).parent / "sqlsnap"
        argv = (str(beside),) if beside.exists() else (sys.executable, "-c", SQLSNAP_MAIN)
        return Sqlsnap(argv, {}, str(package), code_digest(package))
    frozen = freeze(package, freeze_into)
    sys.path.insert(0, str(freeze_into))  # sqlsnap.demo.table_row_counts from the same code
    return frozen_sqlsnap(frozen, f"{package} (frozen copy)")


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True)


def git_archive(repo: Path, commit: str, paths: Sequence[str], into: Path) -> None:
    """Extract ``paths`` as they are in ``commit`` under ``into`` (the working tree is not
    touched: someone may be editing it)."""
    result = git(repo, "archive", "--format=tar", commit, *paths)
    if result.returncode != 0:
        sys.exit(f"--baseline: git archive {commit} {' '.join(paths)} failed: "
                 f"{result.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        tar.extractall(into, filter="data")


def baseline_pgcopy(repo: Path, commit: str, package: Path, base: Path, scratch: Path) -> str:
    """Give the baseline copy ``base`` the C reader that the current code ``package`` runs
    with, or build it.

    The compiled module is not in git. When the C source of ``commit`` is byte-identical to
    the current one, the current module is that code compiled, and copying it spares a
    compiler run. Otherwise it is built with ``commit``'s setup.py, as ``pip install`` would
    build it. Returns how the module was obtained, for the report.
    """
    at_rev = base / PGCOPY_SOURCE
    if not at_rev.exists():
        return f"none: {commit[:12]} has no {REPO_PACKAGE}/{PGCOPY_SOURCE} (the Python COPY loop)"
    # The C source the current module was built from: beside it (an editable install, as
    # here, and its frozen copy), else in the working tree.
    folder = package if (package / PGCOPY_SOURCE).exists() else repo / REPO_PACKAGE

    def source(where: Path, name: str) -> bytes | None:
        return (where / name).read_bytes() if (where / name).exists() else None

    built = sorted(package.glob(PGCOPY_BUILT))
    if all(source(folder, name) == source(base, name) for name in PGCOPY_SOURCES):
        if not built:
            # Then the current code runs without it too: both are measured alike.
            return f"none: {PGCOPY_SOURCE} is unchanged and {package} has no compiled module either"
        shutil.copy2(built[0], base / built[0].name)
        return f"copied {built[0]} (its C sources unchanged)"
    log(f"--baseline: {PGCOPY_SOURCE} differs at {commit[:12]}: building it with that revision's setup.py")
    git_archive(repo, commit, ["setup.py", REPO_PACKAGE], scratch)
    # setup.py marks the extension optional: a failed compile exits 0 without the module,
    # so its presence is what is checked.
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", "lib",
                             "--build-temp", "tmp"], cwd=scratch, capture_output=True, text=True)
    made = sorted((scratch / "lib").rglob(PGCOPY_BUILT))
    if result.returncode != 0 or not made:
        sys.exit(f"--baseline: could not build {PGCOPY_SOURCE} of {commit[:12]} (exit {result.returncode}); "
                 f"without it the baseline would run the slower Python COPY loop. Output:\n"
                 f"{(result.stdout + result.stderr).strip()[-3000:]}")
    shutil.copy2(made[0], base / made[0].name)
    return f"built from {commit[:12]}'s {PGCOPY_SOURCE} with its setup.py"


def baseline_sqlsnap(rev: str, workdir: Path, current: Path) -> tuple[Sqlsnap, dict[str, str]]:
    """The sqlsnap code of git revision ``rev``, frozen like the current code (the package
    folder ``current``, whose C reader it shares when the C source is the same).

    Taken with ``git archive`` from the repository holding this script, so the working tree
    (which someone may be editing) and the index are not touched. Returns it and a
    description for the report.
    """
    here = Path(__file__).resolve().parent
    top = git(here, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        sys.exit(f"--baseline: {here} is not in a git repository")
    repo = Path(top.stdout.decode().strip())
    resolved = git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if resolved.returncode != 0:
        sys.exit(f"--baseline: {rev!r} is not a commit in {repo}")
    commit = resolved.stdout.decode().strip()
    archive = workdir / "baseline-archive"
    git_archive(repo, commit, [REPO_PACKAGE], archive)
    pgcopy = baseline_pgcopy(repo, commit, current, archive / REPO_PACKAGE, workdir / "baseline-build")
    frozen = freeze(archive / REPO_PACKAGE, workdir / "code-base")
    shutil.rmtree(archive)
    snap = frozen_sqlsnap(frozen, f"{repo} at {rev} ({commit}, git archive, frozen copy)")
    return snap, {"rev": rev, "commit": commit, "pgcopy": pgcopy}


def psql(db: str, sql: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``sql`` with psql (tuples only, unaligned, no ~/.psqlrc)."""
    return subprocess.run(
        ["psql", "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1", "-d", url_for(db), "-c", sql],
        capture_output=True, text=True, check=check,
    )


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def path_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# The database under test
# --------------------------------------------------------------------------------------


def database_exists(db: str) -> bool:
    out = psql(ADMIN_DB, f"SELECT 1 FROM pg_database WHERE datname = {quote_literal(db)}").stdout
    return out.strip() == "1"


def expected_counts(scale: int) -> dict[str, int] | None:
    """Rows per table that ``sqlsnap demo --scale`` builds, or None if sqlsnap cannot say."""
    try:
        from sqlsnap.demo import table_row_counts
    except Exception as exc:  # noqa: BLE001 - the demo module is still being written
        log(f"cannot import sqlsnap.demo.table_row_counts ({exc}); the database will be rebuilt")
        return None
    return table_row_counts(scale)


def actual_counts(db: str, tables: Sequence[str]) -> dict[str, int] | None:
    """Exact rows per table, or None when a table is missing."""
    query = " UNION ALL ".join(
        f"SELECT {quote_literal(t)}, count(*) FROM {quote_ident(SCHEMA)}.{quote_ident(t)}" for t in tables
    )
    result = psql(db, query, check=False)
    if result.returncode != 0:
        return None
    counts: dict[str, int] = {}
    for line in result.stdout.splitlines():
        name, _, n = line.partition("|")
        counts[name] = int(n)
    return counts


def has_demo(db: str, scale: int) -> bool:
    expected = expected_counts(scale)
    if expected is None or not database_exists(db):
        return False
    return actual_counts(db, list(expected)) == expected


def build(snap: Sqlsnap, db: str, scale: int) -> float:
    """Build the demo at ``scale`` into ``db``; return the seconds it took."""
    args = ("demo", "--target", url_for(db), "--scale", str(scale), "--no-export", "-q")
    for attempt in range(1, BUILD_ATTEMPTS + 1):
        log(f"building: sqlsnap {' '.join(args)}")
        started = time.perf_counter()
        result = snap.run(*args)
        if result.returncode == 0:
            return time.perf_counter() - started
        log(f"sqlsnap demo failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")
        if attempt < BUILD_ATTEMPTS:
            log(f"retrying in {BUILD_RETRY_WAIT_S} s (attempt {attempt + 1} of {BUILD_ATTEMPTS})")
            time.sleep(BUILD_RETRY_WAIT_S)
    sys.exit(f"could not build the demo database {db} at scale {scale}")


def prepare(snap: Sqlsnap, db: str, scale: int, skip_build: bool) -> dict[str, Any]:
    """Make sure ``db`` holds the demo at ``scale``, vacuum it, and describe it."""
    built_s: float | None = None
    if skip_build and has_demo(db, scale):
        log(f"{db}: already holds the demo at scale {scale} (row counts match); not rebuilding")
    else:
        if skip_build:
            log(f"{db}: does not hold the demo at scale {scale}; building it")
        built_s = build(snap, db, scale)
        if not has_demo(db, scale):
            log(f"warning: {db}'s row counts differ from sqlsnap.demo.table_row_counts({scale})")
    log(f"{db}: VACUUM ANALYZE")
    psql(db, "VACUUM ANALYZE")
    tables = list_tables(db)
    counts = actual_counts(db, [t for t, _ in tables]) or {}
    size = int(psql(db, "SELECT pg_database_size(current_database())").stdout.strip())
    return {
        "name": db,
        "scale": scale,
        "tables": len(tables),
        "rows": sum(counts.values()),
        "rows_per_table": counts,
        "database_bytes": size,
        "build_seconds": built_s,
    }


def list_tables(db: str) -> list[tuple[str, str]]:
    """(table, relkind) of every table sqlsnap exports by default, by name."""
    out = psql(db, f"""
        SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = {quote_literal(SCHEMA)} AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        ORDER BY c.relname""").stdout
    return [(line.split("|")[0], line.split("|")[1]) for line in out.splitlines() if line]


def write_psql_script(db: str, path: Path) -> None:
    """Every table's ``row_to_json`` COPY, in one read-only snapshot like sqlsnap's.

    The alias is ``r`` and the argument ``r.*``: with ``row_to_json(t)``, a column named
    ``t`` would be taken instead of the row.
    """
    lines = ["BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;"]
    for name, relkind in list_tables(db):
        only = "ONLY " if relkind == "r" else ""
        table = f"{only}{quote_ident(SCHEMA)}.{quote_ident(name)}"
        lines.append(f"COPY (SELECT row_to_json(r.*) FROM {table} r) TO STDOUT ({COPY_OPTIONS});")
    lines.append("COMMIT;")
    path.write_text("\n".join(lines) + "\n")


def drop_database(db: str) -> None:
    log(f"dropping database {db}")
    psql(ADMIN_DB, f"DROP DATABASE IF EXISTS {quote_ident(db)}")


# --------------------------------------------------------------------------------------
# CPU accounting from /proc
# --------------------------------------------------------------------------------------


def postmaster_pid(db: str) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine and is readable."""
    try:
        data_dir = psql(db, "SHOW data_directory").stdout.strip()
        return int(Path(data_dir, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError, subprocess.CalledProcessError):
        return None


def _proc_cpu_seconds(pid: int) -> float | None:
    """utime+stime of a live process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat(5)


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal): CPU seconds all cores spent running something, and seconds the
    hypervisor ran something else while this machine wanted the CPU, since boot."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[:8])
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


class BackendSampler:
    """CPU of the PostgreSQL backends connected to one database, while a way runs.

    Backends are children of the postmaster whose process title names the database
    (``postgres: 15/main: root sqlsnap_bench [local] COPY``); other databases' backends
    (other work on the same server) are left out. Each backend's cumulative CPU is sampled
    every SERVER_SAMPLE_S; a backend that exits loses at most its last interval.
    """

    def __init__(self, pid: int | None, db: str) -> None:
        self.pid = pid
        self.marker = f" {db} "
        self.seen: dict[int, float] = {}
        self.baseline: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _backends(self) -> list[int]:
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return []
        pids = []
        for child in children:
            try:
                raw = Path(f"/proc/{child}/cmdline").read_bytes()
                title = raw.replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.marker in title:
                pids.append(int(child))
        return pids

    def _sample(self) -> None:
        for pid in self._backends():
            cpu = _proc_cpu_seconds(pid)
            if cpu is not None:
                self.seen[pid] = cpu

    def _loop(self) -> None:
        while not self._stop.wait(SERVER_SAMPLE_S):
            self._sample()

    def start(self) -> None:
        if self.pid is None:
            return
        self._sample()
        self.baseline = dict(self.seen)  # backends already there (none, normally)
        self._thread = threading.Thread(target=self._loop, name="backend-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> float | None:
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        return sum(cpu - self.baseline.get(pid, 0.0) for pid, cpu in self.seen.items())


# --------------------------------------------------------------------------------------
# Ways and measurements
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Way:
    """One way of exporting: a command that writes ``out`` (a file or a folder)."""

    name: str
    suffix: str
    command: Callable[[Path], list[str]]
    #: The command's standard output goes to ``out`` (psql) instead of /dev/null.
    stdout_to_out: bool = False
    env: dict[str, str] = field(default_factory=dict)
    is_sqlsnap: bool = True
    note: str = ""
    #: --baseline: the way (of the current code) that this way runs with the baseline code.
    baseline_of: str | None = None


@dataclass
class Run:
    way: str
    scale: int
    round: int  # 0 is the warm-up, not counted
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    output_bytes: int
    server_cpu_s: float | None
    other_cpu_s: float | None
    steal_s: float
    exit_code: int
    #: Seconds spent waiting for the machine to quiet down before the run, and the cores
    #: the rest of the machine was using when it started anyway.
    settle_s: float = 0.0
    busy_cores_before: float | None = None
    error: str = ""
    #: sqlsnap: its SHA-256 sidecar was written (a product guarantee the timing must include).
    sha256_sidecar: bool | None = None

    @property
    def client_cpu_s(self) -> float:
        return self.user_s + self.sys_s


def make_ways(snap: Sqlsnap, db: str, script: Path, names: Sequence[str] | None = None) -> list[Way]:
    url = url_for(db)

    def export(*extra: str) -> Callable[[Path], list[str]]:
        return lambda out: snap.command("export", url, "-q", "-o", str(out), *extra)

    ways = [
        Way(WAY_PSQL, ".json", lambda out: ["psql", "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1",
                                              "-d", url, "-f", str(script)],
            stdout_to_out=True, is_sqlsnap=False, note="row_to_json COPY, every table, one connection"),
        Way(WAY_PG_DUMP, ".dir", lambda out: ["pg_dump", "-d", url, "--schema", SCHEMA, "--data-only",
                                               "-Fd", "-j", str(PG_DUMP_JOBS), "-Z0", "-f", str(out)],
            is_sqlsnap=False, note="raw read (text COPY, no JSON), 2 connections"),
        Way(WAY_DEFAULT, ".json", export(), env=snap.env, note="default parallelism"),
        Way(WAY_JOBS1, ".json", export("--jobs", "1"), env=snap.env),
        Way(WAY_PYTHON, ".json", export("--no-server-json"), env=snap.env, note="values encoded in Python"),
        Way(WAY_SERVER_JSON, ".json", export("--no-binary-copy"), env=snap.env,
            note="the server builds each row's JSON (row_to_json), as before issue 12"),
        Way(WAY_JSONL, ".jsonl", export("--format", "jsonl"), env=snap.env),
    ]
    help_text = snap.run("export", "--help").stdout
    if "--no-binary-copy" not in help_text:  # code from before issue 12 (--baseline)
        ways = [w for w in ways if w.name != WAY_SERVER_JSON]
    if "--anonymize" in help_text:
        ways.append(Way(WAY_ANONYMIZE, ".json", export("--anonymize"),
                        env={**snap.env, "SQLSNAP_HASH_KEY": HASH_KEY}))
    else:
        log("sqlsnap export --help does not list --anonymize: that way is skipped")
    ways.append(Way(WAY_ZSTD, ".json.zst", export(), env=snap.env, note="zstd-compressed document"))
    if names is not None:
        ways = [w for w in ways if w.name in names]
    return ways


def with_baseline(ways: Sequence[Way], base_ways: Sequence[Way], label: str) -> list[Way]:
    """``ways`` with each sqlsnap way's baseline twin (from ``base_ways``) right after it,
    where run_rounds keeps it (see there)."""
    twins = {w.name: w for w in base_ways if w.is_sqlsnap}
    merged: list[Way] = []
    for way in ways:
        merged.append(way)
        twin = twins.get(way.name)
        if twin is not None:
            note = f"{twin.note}; " if twin.note else ""
            merged.append(replace(twin, name=way.name + BASELINE_SUFFIX, baseline_of=way.name,
                                  note=f"{note}the code of {label}"))
        elif way.is_sqlsnap:
            log(f"--baseline: the baseline code has no way {way.name!r}; it is measured without one")
    return merged


def name_width(ways: Sequence[Way]) -> int:
    """The width of the way column: 26, or wider for the baseline's suffixed names."""
    return max([26, *(len(w.name) for w in ways)])


def wait_for_quiet(max_wait_s: float) -> tuple[float, float | None]:
    """Wait until the machine uses fewer than QUIET_BUSY_CORES, at most ``max_wait_s``.

    Returns (seconds waited, busy cores in the last sample). On a shared machine this keeps
    a burst of someone else's work (a test run) from landing on one way only.
    """
    if max_wait_s <= 0:
        return 0.0, None
    started = time.perf_counter()
    while True:
        before = machine_cpu_seconds()[0]
        time.sleep(QUIET_SAMPLE_S)
        busy = (machine_cpu_seconds()[0] - before) / QUIET_SAMPLE_S
        waited = time.perf_counter() - started
        if busy < QUIET_BUSY_CORES or waited >= max_wait_s:
            return round(waited, 1), round(busy, 2)


def measure(way: Way, scale: int, round_no: int, workdir: Path, sampler_pid: int | None, db: str,
            settle_s: float) -> Run:
    """Run ``way`` once as a child process and measure it; delete its output."""
    out = workdir / ("out" + way.suffix)
    sidecar = out.with_name(out.name + ".sha256")
    remove(out)
    sidecar.unlink(missing_ok=True)
    os.sync()  # earlier writes are not flushed on this way's time
    waited, busy_before = wait_for_quiet(settle_s)
    err_path = workdir / "stderr.txt"
    rss_path = workdir / "peak_rss_kib.txt"
    rss_path.unlink(missing_ok=True)
    env = {**os.environ, **way.env}
    wrapper = [RSS_WRAPPER, "-f", "%M", "-o", str(rss_path)] if os.access(RSS_WRAPPER, os.X_OK) else []
    sampler = BackendSampler(sampler_pid, db)
    with open(err_path, "wb") as err, open(out if way.stdout_to_out else os.devnull, "wb") as stdout:
        busy0, steal0 = machine_cpu_seconds()
        sampler.start()
        started = time.perf_counter()
        # Own session: if this benchmark is interrupted, the whole child tree is stopped.
        proc = subprocess.Popen([*wrapper, *way.command(out)], stdout=stdout, stderr=err, env=env,
                                start_new_session=True)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            sampler.stop()
            raise
        wall = time.perf_counter() - started
        server = sampler.stop()
        busy1, steal1 = machine_cpu_seconds()
        busy, steal = busy1 - busy0, steal1 - steal0
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by wait4; tell Popen so it does not wait again
    client = usage.ru_utime + usage.ru_stime
    peak_kib = usage.ru_maxrss  # KiB on Linux; an upper bound (see RSS_WRAPPER)
    if wrapper:
        # GNU time writes "Command exited with non-zero status N" first when the command fails.
        peak_kib = int(rss_path.read_text().split()[-1])
    run = Run(
        way=way.name, scale=scale, round=round_no, wall_s=round(wall, 3),
        user_s=round(usage.ru_utime, 3), sys_s=round(usage.ru_stime, 3),
        peak_rss_mb=round(peak_kib * KIB / MIB, 1),
        output_bytes=path_bytes(out),
        server_cpu_s=None if server is None else round(server, 2),
        other_cpu_s=None if server is None else round(max(0.0, busy - client - server), 2),
        steal_s=round(steal, 2),
        exit_code=code,
        settle_s=waited,
        busy_cores_before=busy_before,
        error="" if code == 0 else err_path.read_text(errors="replace").strip()[-500:],
        sha256_sidecar=sidecar.exists() if way.is_sqlsnap and way.suffix in (".json", ".json.zst") else None,
    )
    remove(out)
    sidecar.unlink(missing_ok=True)
    return run


def describe_ways(ways: Sequence[Way]) -> list[dict[str, Any]]:
    """The exact commands, for the JSON report (OUT stands for the output path)."""
    return [{"name": w.name, "command": w.command(Path("OUT")), "note": w.note} for w in ways]


def run_rounds(ways: Sequence[Way], scale: int, repeat: int, workdir: Path, db: str,
               settle_s: float) -> list[Run]:
    """A warm-up round, then ``repeat`` counted rounds, round robin with a rotating start."""
    pm = postmaster_pid(db)
    if pm is None:
        log("the PostgreSQL server's processes are not readable here: server CPU is not measured")
    # A way and its --baseline twin rotate as one, so that they run seconds apart in every
    # round and meet the same load on the host (their ratio is what --baseline is for); they
    # take turns going first, so that neither always runs after the other (page cache,
    # writeback). Without --baseline every way is its own group, rotated as before.
    groups: list[list[Way]] = []
    for way in ways:
        if way.baseline_of is not None and groups and groups[-1][0].name == way.baseline_of:
            groups[-1].append(way)
        else:
            groups.append([way])
    runs: list[Run] = []
    width = name_width(ways)
    for round_no in range(repeat + 1):
        shift = round_no % len(groups)
        order = [w for g in groups[shift:] + groups[:shift] for w in (g if round_no % 2 == 0 else g[::-1])]
        label = "warm-up" if round_no == 0 else f"round {round_no}/{repeat}"
        for way in order:
            run = measure(way, scale, round_no, workdir, pm, db, settle_s)
            status = "ok" if run.exit_code == 0 else f"FAILED (exit {run.exit_code}): {run.error}"
            log(f"  scale {scale} {label:>11}  {way.name:<{width}} {run.wall_s:7.2f} s  "
                f"client {run.client_cpu_s:6.2f} s  server {fmt(run.server_cpu_s, 6, 2)} s  "
                f"other {fmt(run.other_cpu_s, 6, 2)} s  {run.peak_rss_mb:6.1f} MB  {status}")
            runs.append(run)
    return runs


# --------------------------------------------------------------------------------------
# Summaries, targets, printing
# --------------------------------------------------------------------------------------


def fmt(value: float | None, width: int, precision: int) -> str:
    """``value`` right-aligned in ``width`` with ``precision`` decimals, or '-' when unknown."""
    if value is None:
        return "-".rjust(width)
    return f"{value:{width}.{precision}f}"


def median_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summarize(runs: Sequence[Run], ways: Sequence[Way], scale: int) -> dict[str, dict[str, Any]]:
    """Medians of the counted rounds of each way at ``scale``."""
    summary: dict[str, dict[str, Any]] = {}
    for way in ways:
        counted = [r for r in runs if r.way == way.name and r.scale == scale and r.round > 0]
        good = [r for r in counted if r.exit_code == 0]
        if not good:
            summary[way.name] = {"failed": True, "runs": len(counted)}
            continue
        summary[way.name] = {
            "failed": len(good) < len(counted),
            "runs": len(good),
            "wall_s": statistics.median(r.wall_s for r in good),
            "wall_min_s": min(r.wall_s for r in good),
            "wall_max_s": max(r.wall_s for r in good),
            "client_cpu_s": statistics.median(r.client_cpu_s for r in good),
            "user_s": statistics.median(r.user_s for r in good),
            "sys_s": statistics.median(r.sys_s for r in good),
            "server_cpu_s": median_or_none([r.server_cpu_s for r in good]),
            "other_cpu_s": median_or_none([r.other_cpu_s for r in good]),
            "steal_s": statistics.median(r.steal_s for r in good),
            "peak_rss_mb": statistics.median(r.peak_rss_mb for r in good),
            "peak_rss_max_mb": max(r.peak_rss_mb for r in good),
            "output_bytes": statistics.median(r.output_bytes for r in good),
            "wall_by_round": {r.round: r.wall_s for r in good},
            "server_by_round": {r.round: r.server_cpu_s for r in good if r.server_cpu_s is not None},
            "sha256_sidecar": all(r.sha256_sidecar for r in good) if good[0].sha256_sidecar is not None
            else None,
        }
    psql_wall = summary.get(WAY_PSQL, {}).get("wall_s")
    psql_server = summary.get(WAY_PSQL, {}).get("server_cpu_s")
    dump_server = summary.get(WAY_PG_DUMP, {}).get("server_cpu_s")
    for s in summary.values():
        s["vs_psql"] = s["wall_s"] / psql_wall if psql_wall and "wall_s" in s else None
        server = s.get("server_cpu_s")
        s["server_vs_psql"] = server / psql_server if server is not None and psql_server else None
        s["server_vs_pg_dump"] = server / dump_server if server is not None and dump_server else None
        # Client decoding speed: MB of JSON written per CPU second of the whole client process
        # (reading, decoding, writing, checksums): a lower bound on the decoder's own speed.
        cpu = s.get("client_cpu_s")
        s["json_mb_per_client_cpu_s"] = s["output_bytes"] / MIB / cpu if cpu else None
    return summary


def print_table(summary: dict[str, dict[str, Any]], ways: Sequence[Way], title: str) -> None:
    print(f"\n{title}")
    width = name_width(ways)
    header = (f"{'way':<{width}} {'wall s':>7} {'min-max':>13} {'x psql':>7} {'client CPU s':>12} "
              f"{'MB/CPU s':>8} {'server CPU s':>12} {'x pg_dump':>9} {'x psql':>7} {'other CPU s':>11} "
              f"{'peak RSS MB':>11} {'output bytes':>14}")
    print(header)
    print("-" * len(header))
    for way in ways:
        s = summary[way.name]
        if "wall_s" not in s:
            print(f"{way.name:<{width}} FAILED in every round")
            continue
        spread = f"{s['wall_min_s']:.2f}-{s['wall_max_s']:.2f}"
        flag = "  (some runs failed)" if s["failed"] else ""
        if s.get("sha256_sidecar") is False:
            flag += "  (no .sha256 sidecar)"
        print(f"{way.name:<{width}} {s['wall_s']:7.2f} {spread:>13} {fmt(s['vs_psql'], 7, 2)} "
              f"{s['client_cpu_s']:12.2f} {fmt(s['json_mb_per_client_cpu_s'], 8, 0)} "
              f"{fmt(s['server_cpu_s'], 12, 2)} {fmt(s['server_vs_pg_dump'], 9, 2)} "
              f"{fmt(s['server_vs_psql'], 7, 2)} {fmt(s['other_cpu_s'], 11, 2)} "
              f"{s['peak_rss_mb']:11.1f} {int(s['output_bytes']):>14,}{flag}")
    print("client CPU: user+sys of the measured process and its children (os.wait4); MB/CPU s: output "
          "MB per client CPU second;\nserver CPU: the backends connected to the benchmark database, "
          "as a ratio to pg_dump's and psql's; other: the rest of the machine's busy CPU\n"
          "(other work). On a VM, the host's load also changes CPU speed, which no counter here shows.")


@dataclass
class Target:
    name: str
    value: float | None
    limit: float
    unit: str
    passed: bool | None  # None: could not be measured
    detail: str = ""


def wall_ratios(summary: dict[str, dict[str, Any]], way: str, ref: str) -> dict[str, Any]:
    """``way``'s wall time over ``ref``'s: of the medians, of the fastest runs, and of the
    runs of each round, with their median; ``missing`` names a way that has no time."""
    a = summary.get(way, {}).get("wall_s")
    b = summary.get(ref, {}).get("wall_s")
    if a is None or b is None:
        return {"missing": way if a is None else ref}
    a_min, b_min = summary[way]["wall_min_s"], summary[ref]["wall_min_s"]
    mine, theirs = summary[way]["wall_by_round"], summary[ref]["wall_by_round"]
    paired = [mine[k] / theirs[k] for k in sorted(mine) if k in theirs]
    return {"way": way, "ref": ref, "wall_s": a, "ref_wall_s": b, "medians": a / b,
            "fastest_s": a_min, "ref_fastest_s": b_min, "fastest": a_min / b_min,
            "paired_by_round": paired,
            "paired_median": statistics.median(paired) if paired else None}


def describe_ratios(r: dict[str, Any]) -> str:
    detail = (f"medians {r['wall_s']:.2f} s / {r['ref_wall_s']:.2f} s = {r['medians']:.2f}; "
              f"fastest {r['fastest_s']:.2f} s / {r['ref_fastest_s']:.2f} s = {r['fastest']:.2f}")
    if r["paired_by_round"]:
        detail += (f"; paired by round {', '.join(f'{p:.2f}' for p in r['paired_by_round'])} "
                   f"(median {r['paired_median']:.2f})")
    return detail


def ratio_target(name: str, summary: dict[str, dict[str, Any]], way: str, ref: str, limit: float) -> Target:
    """Passes only if both the ratio of the medians and the ratio of the fastest runs meet the
    limit; the value shown is the worse of the two. On a shared VM one slow run of the
    reference carries its median (psql ran 9.7-13.5 s in one run of 2026-12-01), which would
    pass a way that is not faster; the fastest runs are the least disturbed by other work.
    The ratios of the runs of one round (run minutes apart) are shown too, for information:
    they follow the host's load as it drifts."""
    r = wall_ratios(summary, way, ref)
    if "missing" in r:
        return Target(name, None, limit, "x", None, f"{r['missing']} was not measured or failed")
    value = max(r["medians"], r["fastest"])
    return Target(name, value, limit, "x", value <= limit, describe_ratios(r))


def server_target(name: str, summary: dict[str, dict[str, Any]], way: str, ref: str, limit: float) -> Target:
    """The server CPU of ``way`` over ``ref``'s: passes only if both the ratio of the medians
    and the median of the ratios paired by round meet the limit (the worse one is shown)."""
    a = summary.get(way, {}).get("server_cpu_s")
    b = summary.get(ref, {}).get("server_cpu_s")
    if a is None or not b:
        return Target(name, None, limit, "x", None, "server CPU not measured (or a way failed)")
    mine, theirs = summary[way]["server_by_round"], summary[ref]["server_by_round"]
    paired = [mine[k] / theirs[k] for k in sorted(mine) if theirs.get(k)]
    value = max(a / b, statistics.median(paired)) if paired else a / b
    detail = f"medians {a:.2f} s / {b:.2f} s = {a / b:.2f}"
    if paired:
        detail += (f"; paired by round {', '.join(f'{p:.2f}' for p in paired)} "
                   f"(median {statistics.median(paired):.2f})")
    return Target(name, value, limit, "x", value <= limit, detail)


def check_targets(summary: dict[str, dict[str, Any]], ways: Sequence[Way]) -> list[Target]:
    targets = [
        server_target(f"sqlsnap default server CPU / pg_dump's <= {TARGET_SERVER_VS_PG_DUMP:.1f}", summary,
                      WAY_DEFAULT, WAY_PG_DUMP, TARGET_SERVER_VS_PG_DUMP),
        server_target(f"sqlsnap default server CPU / psql's <= {TARGET_SERVER_VS_PSQL:.1f}", summary,
                      WAY_DEFAULT, WAY_PSQL, TARGET_SERVER_VS_PSQL),
        ratio_target(f"sqlsnap default / psql <= {TARGET_DEFAULT_VS_PSQL:.2f}", summary, WAY_DEFAULT,
                     WAY_PSQL, TARGET_DEFAULT_VS_PSQL),
        ratio_target(f"sqlsnap --jobs 1 / psql <= {TARGET_JOBS1_VS_PSQL:.2f}", summary, WAY_JOBS1,
                     WAY_PSQL, TARGET_JOBS1_VS_PSQL),
    ]
    # The targets are the current code's: the baseline's ways (--baseline) are left out.
    rss = [(s["peak_rss_max_mb"], w.name) for w in ways if w.is_sqlsnap and w.baseline_of is None
           for s in [summary[w.name]] if "peak_rss_max_mb" in s]
    name = f"peak RSS of sqlsnap < {TARGET_PEAK_RSS_MB:.0f} MB (largest over every sqlsnap run)"
    if rss:
        worst, worst_way = max(rss)
        targets.append(Target(name, worst, TARGET_PEAK_RSS_MB, "MB", worst < TARGET_PEAK_RSS_MB,
                              f"largest: {worst_way}"))
    else:
        targets.append(Target(name, None, TARGET_PEAK_RSS_MB, "MB", None, "no sqlsnap run succeeded"))
    no_sidecar = [w.name for w in ways if summary.get(w.name, {}).get("sha256_sidecar") is False]
    targets.append(Target("every sqlsnap document has its .sha256 sidecar", len(no_sidecar), 0, "ways",
                          not no_sidecar, ", ".join(no_sidecar) or "checked after every run"))
    anon_name = f"sqlsnap --anonymize / sqlsnap default <= {TARGET_ANONYMIZE_VS_DEFAULT:.1f}"
    if any(w.name == WAY_ANONYMIZE for w in ways):
        targets.append(ratio_target(anon_name, summary, WAY_ANONYMIZE, WAY_DEFAULT,
                                    TARGET_ANONYMIZE_VS_DEFAULT))
    else:
        targets.append(Target(anon_name, None, TARGET_ANONYMIZE_VS_DEFAULT, "x", None,
                              "not measured: sqlsnap export has no --anonymize, or --ways left it out"))
    return targets


def baseline_ratios(summary: dict[str, dict[str, Any]], ways: Sequence[Way]) -> dict[str, dict[str, Any]]:
    """--baseline: each sqlsnap way's wall time over its baseline twin's."""
    return {w.baseline_of: wall_ratios(summary, w.baseline_of, w.name) for w in ways if w.baseline_of}


def print_baseline(ratios: dict[str, dict[str, Any]], base: dict[str, str], code_sha256: str) -> None:
    """For information, no verdict: on this shared VM a few rounds move a ratio by 10-20%
    (bench/README.md, runs K and L), so a small change shows only over many rounds, in the
    paired ratios' median more than in the others."""
    print(f"\nCurrent code / baseline {base['rev']} ({base['commit'][:12]}, code sha256 "
          f"{code_sha256[:12]}): wall time, below 1 is faster now (for information)")
    for way, r in ratios.items():
        if "missing" in r:
            print(f"  {way}: n/a  ({r['missing']} was not measured or failed)")
        else:
            print(f"  {way}: {describe_ratios(r)}")


def print_targets(targets: Sequence[Target]) -> None:
    print("\nTargets")
    for t in targets:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[t.passed]
        value = "n/a" if t.value is None else f"{t.value:.2f} {t.unit}"
        print(f"  {verdict}  {t.name}: {value}" + (f"  ({t.detail})" if t.detail else ""))


# --------------------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------------------


def machine_info(snap: Sqlsnap) -> dict[str, Any]:
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    version = snap.run("--version")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "psql": pg,
        "sqlsnap": (version.stdout or version.stderr).strip(),
        "sqlsnap_code": snap.source,
        "sqlsnap_code_sha256": snap.code_sha256,
    }


def db_for_scale(args: argparse.Namespace, scale: int) -> str:
    """--db for the main scale; --scales builds other scales beside it as <db>_s<scale>."""
    return args.db if scale == args.scale else f"{args.db}_s{scale}"


def main_mode(args: argparse.Namespace, snap: Sqlsnap, workdir: Path, report: dict[str, Any],
              base: Sqlsnap | None = None) -> None:
    db = args.db
    report["database"] = prepare(snap, db, args.scale, args.skip_build)
    script = workdir / "copy_all_tables.sql"
    write_psql_script(db, script)
    ways = make_ways(snap, db, script, args.ways)
    if base is not None:
        b = report["baseline"]
        ways = with_baseline(ways, make_ways(base, db, script, args.ways), f"{b['rev']} ({b['commit'][:12]})")
    log(f"measuring {len(ways)} ways: 1 warm-up round + {args.repeat} rounds, round robin")
    runs = run_rounds(ways, args.scale, args.repeat, workdir, db, args.settle)
    summary = summarize(runs, ways, args.scale)
    d = report["database"]
    print_table(summary, ways, f"scale {args.scale}: {d['tables']} tables, {d['rows']:,} rows; "
                f"medians of {args.repeat} rounds")
    targets = check_targets(summary, ways)
    print_targets(targets)
    if base is not None:
        report["baseline"]["ratios"] = baseline_ratios(summary, ways)
        print_baseline(report["baseline"]["ratios"], report["baseline"], base.code_sha256)
    report.update(ways=describe_ways(ways), runs=[asdict(r) for r in runs], summary=summary,
                  targets=[asdict(t) for t in targets])


def scales_mode(args: argparse.Namespace, snap: Sqlsnap, workdir: Path, report: dict[str, Any]) -> None:
    report["databases"] = []
    all_runs: list[Run] = []
    per_scale: dict[int, dict[str, dict[str, Any]]] = {}
    ways: list[Way] = []
    for scale in args.scales:
        db = db_for_scale(args, scale)
        report["databases"].append(prepare(snap, db, scale, args.skip_build))
        script = workdir / f"copy_all_tables_{scale}.sql"
        write_psql_script(db, script)
        ways = make_ways(snap, db, script, args.ways or SCALES_WAYS)
        runs = run_rounds(ways, scale, args.repeat, workdir, db, args.settle)
        all_runs += runs
        per_scale[scale] = summarize(runs, ways, scale)
        d = report["databases"][-1]
        print_table(per_scale[scale], ways, f"scale {scale}: {d['tables']} tables, {d['rows']:,} rows; "
                    f"medians of {args.repeat} rounds")
    print("\nPeak RSS (MB, median) by scale")
    print(f"{'way':<26}" + "".join(f"{'scale ' + str(s):>12}" for s in args.scales))
    flat: list[Target] = []
    smallest, largest = min(args.scales), max(args.scales)
    for way in ways:
        values = [per_scale[s][way.name].get("peak_rss_mb") for s in args.scales]
        print(f"{way.name:<26}" + "".join(fmt(v, 12, 1) for v in values))
        if not way.is_sqlsnap:
            continue
        lo = per_scale[smallest][way.name].get("peak_rss_mb")
        hi = per_scale[largest][way.name].get("peak_rss_mb")
        name = (f"{way.name}: peak RSS at scale {largest} <= {1 + FLAT_RSS_TOLERANCE:.2f} x scale {smallest} "
                "(memory is flat)")
        if lo is None or hi is None:
            flat.append(Target(name, None, 1 + FLAT_RSS_TOLERANCE, "x", None, "a run failed"))
        else:
            flat.append(Target(name, hi / lo, 1 + FLAT_RSS_TOLERANCE, "x", hi / lo <= 1 + FLAT_RSS_TOLERANCE,
                               f"{hi:.1f} MB vs {lo:.1f} MB"))
            flat.append(Target(f"{way.name}: peak RSS < {TARGET_PEAK_RSS_MB:.0f} MB at every scale",
                               max(lo, hi), TARGET_PEAK_RSS_MB, "MB", max(lo, hi) < TARGET_PEAK_RSS_MB))
    print_targets(flat)
    report.update(ways=describe_ways(ways), runs=[asdict(r) for r in all_runs],
                  summary={str(s): v for s, v in per_scale.items()},
                  targets=[asdict(t) for t in flat])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark sqlsnap export against psql's row_to_json COPY and pg_dump.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--scale", type=int, default=DEFAULT_SCALE,
                        help="demo scale (100 is ~1M rows, ~1 GB of JSON)")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="counted rounds (plus a warm-up)")
    parser.add_argument("--skip-build", action="store_true",
                        help="reuse the database when its row counts are the demo's at that scale")
    parser.add_argument("--db", default=DEFAULT_DB, help="database for --scale (created if missing)")
    parser.add_argument("--scales", type=lambda s: sorted({int(x) for x in s.split(",")}),
                        help="memory mode: e.g. 25,100; a database per scale (<db>_s<scale> for other "
                             "scales than --scale); measures " + ", ".join(SCALES_WAYS))
    parser.add_argument("--ways", type=lambda s: [x.strip() for x in s.split(",")],
                        help="only these ways (comma-separated names as printed)")
    parser.add_argument("--settle", type=float, default=DEFAULT_SETTLE_S, metavar="SECONDS",
                        help=f"before each run, wait up to this long for the rest of the machine to use "
                             f"under {QUIET_BUSY_CORES} cores (0: do not wait)")
    parser.add_argument("--no-freeze", action="store_true",
                        help="run the installed sqlsnap as it is at each run, instead of a copy of the "
                             "package taken at start (the working tree may be edited meanwhile)")
    parser.add_argument("--workdir", type=Path,
                        help="folder in which a temporary folder for the outputs is made (None: /tmp)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure the sqlsnap code of git revision REV (e.g. the commit before a "
                             "refactor), in the same rounds, as ways named <way>" + BASELINE_SUFFIX +
                             ", and print each sqlsnap way's time over its baseline's")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every measurement to FILE")
    parser.add_argument("--drop", action="store_true", help="drop the benchmark database(s) at the end")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.scale < 1 or (args.scales and min(args.scales) < 1):
        parser.error("--repeat, --scale and --scales must be positive")
    if args.baseline and args.scales:
        # The flatness targets would be judged on the baseline's ways too; compare code at one scale.
        parser.error("--baseline compares code at one --scale; it does not combine with --scales")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.access(RSS_WRAPPER, os.X_OK):
        log(f"{RSS_WRAPPER} not found: peak RSS comes from os.wait4 and is at least this process's own")
    # SIGTERM unwinds like Ctrl-C: the running child is stopped and the outputs removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix="sqlsnap-bench-", dir=args.workdir))
    try:
        code_dir = workdir / "code"
        snap = locate_sqlsnap(None if args.no_freeze else code_dir)
        log(f"sqlsnap under test: {snap.source}, code sha256 {snap.code_sha256[:12]}")
        report: dict[str, Any] = {"machine": machine_info(snap),
                                  "args": {k: str(v) for k, v in vars(args).items()}}
        base = None
        if args.baseline:
            # The current code's C reader comes from the code under test: its frozen copy,
            # taken at the same moment as its .py files.
            current = installed_package() if args.no_freeze else code_dir / "sqlsnap"
            base, report["baseline"] = baseline_sqlsnap(args.baseline, workdir, current)
            version = base.run("--version")
            report["baseline"].update(sqlsnap=(version.stdout or version.stderr).strip())
            report["machine"].update(sqlsnap_baseline_code=base.source,
                                     sqlsnap_baseline_code_sha256=base.code_sha256)
            log(f"baseline: {base.source}, code sha256 {base.code_sha256[:12]}; "
                f"C reader: {report['baseline']['pgcopy']}")
        if args.scales:
            scales_mode(args, snap, workdir, report)
        else:
            main_mode(args, snap, workdir, report, base)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print(f"\nload average (1, 5, 15 min) at start {report['machine']['load_average_at_start']}, "
          f"at end {report['machine']['load_average_at_end']} on {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        log(f"measurements written to {args.json}")
    if args.drop:
        for db in {args.db, *(db_for_scale(args, s) for s in args.scales or ())}:
            drop_database(db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
