"""Read-only SQL over a snapshot's DuckDB file, for SQL that nobody checked (an AI
assistant's, a user's): :class:`SafeDatabase` and :func:`query`.

The safety model, enforced on every query, each layer on its own enough for what it covers:

1. **The connection** is opened ``read_only`` with ``enable_external_access=false`` (no file,
   network or extension access: ``COPY ... TO``, ``read_text('/etc/passwd')``,
   ``read_csv``, ``glob``, ``ATTACH``, ``INSTALL``/``LOAD`` all fail) and then
   ``lock_configuration=true``, so that no ``SET`` can undo it. ``read_only`` alone still
   allows all of those (verified on DuckDB 2.0.1; ECOSYSTEM.md section 15).
2. **One statement per call**, parsed by DuckDB's own parser (``extract_statements``), and
   only ``SELECT`` (with ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``, which parse as one) or
   ``EXPLAIN``: ``COMMIT; DROP ...``, a ``SET`` or a ``COPY`` are refused before anything runs.
   The text is capped at :data:`MAX_SQL_CHARS`.
3. **Bounded answers**: at most ``max_rows`` rows are fetched (the query is limited to one
   more, to know that there were more), and the rendered answer is cut at ``max_chars``.
4. **A time limit**: a timer thread interrupts the connection after ``timeout`` seconds.
5. **Memory and threads** are capped (:data:`MEMORY_LIMIT`, :data:`THREADS`) before the lock.

Values are returned as data: the MCP server wraps them in a note that they are the
snapshot's contents, never instructions.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any
from uuid import UUID

from ..errors import MissingDriverError, NotFoundError, SnapError, UsageError

__all__ = ["FORMATS", "MAX_SQL_CHARS", "QueryResult", "SafeDatabase", "max_chars_for", "query", "render"]

#: Rows an answer holds by default: enough for a breakdown or a sample, little enough that
#: a table of them stays a few thousand tokens of an assistant's context.
MAX_ROWS = 200
#: Characters of an answer by default (~10 k tokens at 4 characters per token).
MAX_CHARS = 40_000
#: Seconds a query may run by default; a scan of the demo's million rows takes well under one.
TIMEOUT = 30.0
#: Characters of SQL accepted: a long query is not an analysis, it is a payload.
MAX_SQL_CHARS = 20_000
#: DuckDB's memory limit (its default is 80% of the machine) and threads, so that a runaway
#: join fails in DuckDB instead of starving the machine.
MEMORY_LIMIT = "2GB"
THREADS = 4
#: Statement types allowed (DESCRIBE, SHOW and SUMMARIZE parse as SELECT).
_ALLOWED = frozenset({"SELECT", "EXPLAIN"})
FORMATS = ("table", "json", "csv", "markdown")


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as exc:
        raise MissingDriverError(f"DuckDB is not installed ({exc.name}); install it with: "
                                 "pip install 'sqlsnap[duckdb]'", dialect="duckdb") from None
    return duckdb


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    #: True when the query had more than ``max_rows`` rows: only the first are here.
    truncated: bool
    max_rows: int
    seconds: float
    notes: list[str] = field(default_factory=list)


class SafeDatabase:
    """One locked-down, read-only connection to a DuckDB file (see the module docstring).
    Not for several threads at once: each query uses the one connection."""

    def __init__(self, path: str, *, max_rows: int = MAX_ROWS, timeout: float = TIMEOUT) -> None:
        duckdb = _duckdb()
        self.path = path
        self.max_rows = max_rows
        self.timeout = timeout
        self._errors = duckdb.Error
        self._interrupt = duckdb.InterruptException
        self._refused = duckdb.PermissionException
        config = {
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "memory_limit": MEMORY_LIMIT,
            "threads": THREADS,
            "lock_configuration": True,  # last: nothing after it can change the above
        }
        try:
            self.connection = duckdb.connect(path, read_only=True, config=config)
        except duckdb.Error as exc:  # missing, not a DuckDB file, or one of another DuckDB version
            raise NotFoundError(f"cannot read the DuckDB file {path} ({_first(exc)}); delete it and run the "
                                "query again to load the snapshot anew", path=path) from None
        self._lock = threading.Lock()

    def check(self, sql: str) -> str:
        """``sql`` if it is one SELECT or EXPLAIN statement of at most :data:`MAX_SQL_CHARS`;
        else :class:`UsageError` saying why."""
        if len(sql) > MAX_SQL_CHARS:
            raise UsageError(f"the query is {len(sql):,} characters; at most {MAX_SQL_CHARS:,} are accepted: "
                             "write a shorter query")
        try:
            statements = _duckdb().extract_statements(sql)
        except self._errors as exc:
            raise UsageError(f"the query is not valid SQL: {_first(exc)}") from None
        if len(statements) != 1:
            raise UsageError(f"one statement per query, this has {len(statements)}; send them one at a time")
        kind = statements[0].type.name
        if kind not in _ALLOWED:
            raise UsageError(f"only SELECT (and DESCRIBE, SHOW, SUMMARIZE, EXPLAIN) can run on a snapshot, "
                             f"not {kind}: the snapshot is read-only")
        return sql

    def query(self, sql: str, *, max_rows: int | None = None) -> QueryResult:
        """Run one checked statement under the time limit; at most ``max_rows`` rows."""
        self.check(sql)
        limit = self.max_rows if max_rows is None else max_rows
        with self._lock:
            timer = threading.Timer(self.timeout, self.connection.interrupt)
            timer.daemon = True
            started = time.monotonic()
            timer.start()
            try:
                relation = self.connection.sql(sql)
                if relation is None:  # not a query that returns rows (EXPLAIN returns some)
                    return QueryResult([], [], [], False, limit, time.monotonic() - started)
                relation = relation.limit(limit + 1)
                rows = relation.fetchall()
                columns = list(relation.columns)
                types = [str(t) for t in relation.types]
            except self._interrupt:
                raise UsageError(f"the query ran longer than {self.timeout:g} s and was stopped; aggregate "
                                 "or filter more, or add a LIMIT") from None
            except self._refused as exc:
                raise UsageError(f"the query was refused ({_first(exc)}); only the snapshot's tables can be "
                                 "read: no files, network or extensions") from None
            except self._errors as exc:
                raise SnapError(f"the query failed: {_first(exc)}") from None
            finally:
                timer.cancel()
        truncated = len(rows) > limit
        return QueryResult(columns, types, rows[:limit], truncated, limit, time.monotonic() - started)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> SafeDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def query(snapshot: str, sql: str, *, max_rows: int = MAX_ROWS, timeout: float = TIMEOUT,
          cache_dir: str | None = None, identities: Sequence[Any] = (),
          s3_endpoint: str | None = None) -> QueryResult:
    """Run ``sql`` (one read-only statement, DuckDB's SQL) on the snapshot at ``snapshot``.

    The snapshot is loaded into a DuckDB file the first time (beside it, or in ``cache_dir``;
    see :func:`sqlsnap.ai.load.cached_database`) and reused while its SHA-256 is unchanged.
    Every table of the snapshot is a table; ``_sqlsnap_tables``, ``_sqlsnap_columns``,
    ``_sqlsnap_foreign_keys`` and ``_sqlsnap_metadata`` describe them. Raises
    :class:`UsageError` for a refused or timed-out query, :class:`SnapError` for a failed one.
    """
    from .load import cached_database

    path = cached_database(snapshot, cache_dir=cache_dir, identities=identities, s3_endpoint=s3_endpoint)
    with SafeDatabase(path, max_rows=max_rows, timeout=timeout) as db:
        return db.query(sql)


# -- rendering ----------------------------------------------------------------------------------


def max_chars_for(max_rows: int) -> int:
    """The character cap that goes with ``max_rows`` at the command line: a person at a
    terminal asked for those rows, so 2,000 characters a row (an assistant gets
    :data:`MAX_CHARS`)."""
    return max(MAX_CHARS, max_rows * 2000)


def plain(value: Any) -> Any:
    """A JSON-native form of a DuckDB value: exact decimals as strings, times in ISO 8601."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


def _cell(value: Any) -> str:
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render(result: QueryResult, fmt: str = "table", *, max_chars: int = MAX_CHARS) -> str:
    """The result as text, cut at ``max_chars`` (whole rows only) with a line saying so."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'; use one of: {', '.join(FORMATS)}")
    notes = list(result.notes)
    if result.truncated:
        notes.append(f"only the first {result.max_rows} rows are shown; aggregate, filter or add a LIMIT")
    if fmt == "json":
        rows = [dict(zip(result.columns, map(plain, row))) for row in result.rows]
        body, kept = _cut_json(rows, max_chars)
        if kept < len(rows):
            notes.append(f"cut at {max_chars:,} characters after {kept} rows")
        return json.dumps({"columns": result.columns, "rows": body, "truncated": result.truncated
                           or kept < len(rows), "notes": notes}, ensure_ascii=False, indent=1)
    lines = _lines(result, fmt)
    out: list[str] = []
    size = 0
    header = 2 if fmt in ("table", "markdown") else 1
    for i, line in enumerate(lines):
        if size + len(line) + 1 > max_chars and i >= header:
            notes.append(f"cut at {max_chars:,} characters after {i - header} rows")
            break
        out.append(line)
        size += len(line) + 1
    if fmt == "csv":
        return "\n".join(out)
    return "\n".join(out + [f"({note})" for note in notes])


def _cut_json(rows: list[dict[str, Any]], max_chars: int) -> tuple[list[dict[str, Any]], int]:
    size = 0
    for i, row in enumerate(rows):
        size += len(json.dumps(row, ensure_ascii=False)) + 2
        if size > max_chars:
            return rows[:i], i
    return rows, len(rows)


def _lines(result: QueryResult, fmt: str) -> list[str]:
    cells = [[_cell(v) for v in row] for row in result.rows]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(cells)
        return buffer.getvalue().splitlines()
    if fmt == "markdown":
        def esc(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        return (["| " + " | ".join(esc(c) for c in result.columns) + " |",
                 "|" + "|".join("---" for _ in result.columns) + "|"]
                + ["| " + " | ".join(esc(c) for c in row) + " |" for row in cells])
    # table: columns padded to their widest cell, at most 60 characters a cell
    cells = [[c.replace("\n", " ")[:60] for c in row] for row in cells]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(result.columns)]
    numeric = [t.split("(")[0] in ("BIGINT", "HUGEINT", "INTEGER", "DOUBLE", "DECIMAL", "SMALLINT", "FLOAT")
               for t in result.types]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    return [line(result.columns), "  ".join("-" * w for w in widths)] + [line(row) for row in cells]
