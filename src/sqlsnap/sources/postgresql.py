"""PostgreSQL source (psycopg 3).

Snapshot: the main connection runs ``REPEATABLE READ, READ ONLY`` and exports its snapshot
with ``pg_export_snapshot()``; every reader opens its own connection and adopts that
snapshot with ``SET TRANSACTION SNAPSHOT`` before anything else, so parallel readers see
exactly the same data.

Three ways to read a table, producing identical bytes (tests/test_pgcopy.py,
tests/test_postgresql_paths.py):

* binary COPY (default, with the C extension): the stored columns as binary COPY, each tuple
  written as JSON in C (sources/pgbinary.py, sqlsnap/_pgdecode.c); the server does no JSON
  work at all.
* server JSON (``binary_copy=False``, or without the extension):
  ``COPY (SELECT row_to_json(t) FROM (SELECT <expr> AS col ...) t)``.
  The server builds each row's JSON; Python only moves bytes. The C reader
  (``sqlsnap._pgcopy``, optional) reads it as binary COPY, without the GIL; without it, COPY
  runs in CSV mode with a quote and delimiter that never occur (JSON escapes every control
  character), read in Python, because text mode doubles every backslash in the JSON.
  Both give the same bytes.
* portable: the same columns fetched as values and encoded by msgspec, with text loaders
  for numbers, JSON and dates so that no value passes through a lossy Python type.

The per-column expressions turn PostgreSQL's JSON conventions into the format contract:
timestamptz in UTC with ``Z``, bytea as base64 on one line, json as its stored text with
tabs and line breaks turned into spaces (one line, so that JSON Lines stays one row a line),
types without a JSON form as their canonical text.
"""

from __future__ import annotations

import base64
import getpass
import os
import select
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import msgspec

from ..errors import AuthenticationError, NotFoundError, ServerUnreachable, SnapError, SourceBusy
from ..model import Column, ForeignKey, Table
from ..plan.request import Part, Projection, ReadRequest
from ..plan.segment import BUCKETS, Closure, SegmentRead
from ..urls import mask
from ..values import ENCODER, Converter, b64, identity, nullable, number_token
from . import missing_driver, pgbinary
from .base import (
    CHUNK_BYTES,
    FETCH_ROWS,
    HUGE_VALUE,
    Cancelled,
    SegmentSQL,
    Source,
    TableReader,
    chunked_rows,
    render_filter,
    render_segment,
    row_in_pieces,
)
from .segment_sets import render_segment_sets, render_segment_sets_rows

try:
    import psycopg
    from psycopg import pq, sql
    from psycopg.adapt import Loader
except ImportError as exc:  # pragma: no cover - exercised by the missing-driver test
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

    class _TextLoader(Loader):
        """Load a value as the server's text: no float rounding, no Decimal exponent form."""

        def load(self, data: Any) -> str:
            return bytes(data).decode()


def _c_reader() -> Any:
    """sqlsnap._pgcopy bound to psycopg's libpq, or None: then COPY is read in Python.

    The C reader is optional (setup.py); it cannot be used when psycopg runs without a libpq
    of its own in this process that it can find (bind() says why)."""
    try:
        from .. import _pgcopy  # type: ignore[attr-defined]  # the optional C extension
    except ImportError:
        return None
    try:
        _pgcopy.bind()
    except OSError:
        return None
    return _pgcopy


_PGCOPY: Any = None if _IMPORT_ERROR else _c_reader()


#: Session settings that fix the text forms the conversions rely on, and the row order: a
#: scan of a large table joins one already running elsewhere mid-table unless
#: synchronize_seqscans is off (as pg_dump sets it), so two exports of the same data would
#: differ in order.
SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601 -c extra_float_digits=1"
    " -c synchronize_seqscans=off"
)

#: The types whose large values the binary COPY can leave out and read in pieces (substring()
#: by characters or bytes; bpchar's would lose its padding).
_HUGE_TYPES = {"text", "varchar", "bytea"}
#: Those pieces: a query each. Of a compressed value each piece decompresses it up to its end
#: (a 200 MiB value in 16 MiB pieces decompresses 1.4 GB); the client holds about three
#: (libpq's buffer, psycopg's result, the str), and writes each a chunk at a time.
PG_PIECE_BYTES = 16 << 20

_INT = {"int2", "int4", "int8", "oid"}
_NUMBER = {"numeric", "float4", "float8"}
_TEXT = {"text", "varchar", "bpchar", "name", "char", "citext"}
#: Element kinds whose arrays become JSON arrays of native values; other arrays are written
#: as arrays of their elements' canonical text.
_NATIVE_ELEMENTS = {"bool", "int", "number", "jsonb", "text"}
#: Types loaded as text on the portable path (also inside arrays).
_TEXT_LOADED = ("numeric", "float4", "float8", "json", "jsonb")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class _ColumnPlan:
    """How one column is read: the SQL expression on each path and the Python converter."""

    server_expr: str
    portable_expr: str
    kind: str
    element: str | None = None


def _kind(typname: str, typtype: str) -> str:
    if typname == "bool":
        return "bool"
    if typname in _INT:
        return "int"
    if typname in _NUMBER:
        return "number"
    if typname in ("json", "jsonb"):
        return typname
    if typname in _TEXT or typtype == "e":
        return "text"
    if typname in ("bytea", "timestamp", "timestamptz", "inet", "uuid"):
        return typname
    return "other"


def _plan_column(name: str, kind: str, element: str | None) -> _ColumnPlan:
    c = _quote(name)
    if kind in ("bool", "int", "number", "jsonb"):
        return _ColumnPlan(c, c, kind)
    if kind == "text":
        # No cast: text would strip char(n) padding. Enums and citext load as str anyway.
        return _ColumnPlan(c, c, kind)
    if kind == "json":
        # Not through ::jsonb, which rejects \u0000 and reorders and collapses keys: the
        # stored text itself, where tabs and line breaks can only be whitespace between
        # tokens (json input rejects them raw inside strings), so turning them into spaces
        # puts the value on one line and changes nothing else. The server path casts back
        # to json so that row_to_json embeds the text as it is.
        text = f"btrim(translate({c}::text, E'\\t\\n\\r', '   '))"
        return _ColumnPlan(f"{text}::json", text, "jsonb")
    if kind == "inet":
        # inet's own output ('10.0.0.1'); a cast to text always adds the netmask ('10.0.0.1/32').
        return _ColumnPlan(f"abbrev({c})", f"abbrev({c})", "other")
    if kind == "bytea":
        # encode() breaks base64 lines at 76 characters; the contract wants one string.
        return _ColumnPlan(f"translate(encode({c}, 'base64'), E'\\n', '')", c, kind)
    if kind == "timestamp":
        return _ColumnPlan(c, f"{c}::text", kind)
    if kind == "timestamptz":
        # to_json gives ISO with 'T' and, with TimeZone=UTC, '+00:00' (its only '+'); the
        # contract wants 'Z'. Edited as json text and cast back: on 225k rows 227 ms against
        # 294 ms for extracting the text with #>> (plain row_to_json: 155 ms).
        return _ColumnPlan(f"replace(to_json({c})::text, '+00:00', 'Z')::json", f"{c}::text", kind)
    if kind == "uuid":
        # row_to_json already writes uuid's text; a cast would only cost time.
        return _ColumnPlan(c, f"{c}::text", "other")
    if kind == "array":
        if element == "jsonb":
            return _ColumnPlan(f"{c}::jsonb[]", f"{c}::jsonb[]", kind, element)
        if element == "text":
            return _ColumnPlan(f"{c}::text[]", f"{c}::text[]", kind, element)
        return _ColumnPlan(c, c, kind, element)
    if kind == "json_array":
        # Not through jsonb[], which rejects an element holding \u0000 and so failed the whole
        # export: each element as stored, as a json column is (btrim(translate(...))), done on
        # the array's text so that its dimensions stay. There every element holding whitespace
        # is double-quoted and every quote inside an element is escaped (\"), so a quote right
        # after '{' or ',' opens an element and one right before ',' or '}' closes it: the
        # spaces beside them are the element's own leading and trailing ones.
        text = (f"regexp_replace(regexp_replace(translate({c}::text, E'\\t\\n\\r', '   '), "
                f"'([{{,])\" +', '\\1\"', 'g'), ' +\"([,}}])', '\"\\1', 'g')::json[]")
        return _ColumnPlan(text, text, "array", "jsonb")
    if kind == "text_array":
        return _ColumnPlan(f"{c}::text[]", f"{c}::text[]", "array", "text")
    if kind == "bpchar_array":
        # No cast: text[] would strip each element's char(n) padding; psycopg loads bpchar[].
        return _ColumnPlan(c, c, "array", "text")
    if kind == "inet_array":
        # Through the array's text, so each element is inet's own output (see "inet"); safe
        # because inet text never holds a delimiter, quote, brace or space.
        return _ColumnPlan(f"{c}::text::text[]", f"{c}::text::text[]", "array", "text")
    return _ColumnPlan(f"{c}::text", f"{c}::text", "other")


def _timestamp(value: str) -> str:
    # '2026-11-22 10:00:00.5' -> '2026-11-22T10:00:00.5'; 'infinity' has no space.
    return value.replace(" ", "T", 1)


def _timestamptz(value: str) -> str:
    # With TimeZone=UTC the offset is always '+00'; BC dates keep their ' BC' suffix last.
    return value.replace(" ", "T", 1).replace("+00", "Z", 1)


_SCALAR_CONVERTERS: dict[str, Converter] = {
    "bool": identity,
    "int": identity,
    "number": number_token,
    "jsonb": lambda v: msgspec.Raw(v.encode()),
    "text": identity,
    "other": identity,
    "bytea": b64,
    "timestamp": _timestamp,
    "timestamptz": _timestamptz,
}


def _array_converter(element: str) -> Any:
    conv = nullable(_SCALAR_CONVERTERS[element])

    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return [convert(v) for v in value]
        return conv(value)

    return convert


def _converter(plan: _ColumnPlan) -> Any:
    if plan.kind == "array":
        assert plan.element is not None
        return nullable(_array_converter(plan.element))
    return nullable(_SCALAR_CONVERTERS[plan.kind])


def _result_error(result: Any) -> str:
    if result is None:
        return "the server returned no result"
    message = result.error_message
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


#: The longest single wait in select(); the loop around it decides whether to wait again.
_WAIT_SECONDS = 0.5


def _wait_readable(pgconn: Any) -> None:
    """Wait, without holding the GIL, until the server has sent something. A cancelled export
    does not stop waiting here: the query is cancelled on the server, whose error result
    ends the wait."""
    select.select([pgconn.socket], [], [], _WAIT_SECONDS)


def _get_result(pgconn: Any) -> Any:
    """PQgetResult without blocking inside libpq (which would hold the GIL)."""
    while pgconn.is_busy():
        _wait_readable(pgconn)
        pgconn.consume_input()
    return pgconn.get_result()


def translate_error(exc: Exception, url_display: str) -> SnapError:
    """Turn a psycopg connection error into a one-line SnapError that names the fix."""
    msg = mask(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    low = msg.lower()
    if "database" in low and "does not exist" in low:
        return NotFoundError(f"{msg} (check the database name in {url_display})")
    if "password authentication failed" in low or "no password supplied" in low:
        return AuthenticationError(
            f"{msg}; give the password in the URL, PGPASSWORD or ~/.pgpass", url=url_display
        )
    if "role" in low and "does not exist" in low:
        return AuthenticationError(f"{msg}; check the user name in {url_display}")
    return ServerUnreachable(f"cannot connect to {url_display}: {msg}; is the server running and reachable?")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return mask(text.splitlines()[0] if text else type(exc).__name__)


def runtime_error(exc: Exception, doing: str, lock_timeout: float | None = None,
                  **fields: Any) -> SnapError:
    """A psycopg error met after connecting (locking, counting, reading), as a one-line
    SnapError of the documented class that names the fix (docs/reliability.md)."""
    msg = _first_line(exc)
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate == "55P03":  # lock_not_available: lock_timeout expired
        wait = f"within --lock-timeout {lock_timeout:g} s" if lock_timeout else "in time"
        return SourceBusy(f"{doing}: could not lock the table {wait}, another session holds or awaits a "
                          "conflicting lock (ALTER, TRUNCATE, DROP, VACUUM FULL); try again later or raise "
                          "--lock-timeout (0 waits for ever)", **fields)
    if sqlstate == "57014":  # query_canceled: statement_timeout, or pg_cancel_backend
        return SourceBusy(f"{doing}: the server cancelled the query ({msg}); a statement_timeout set "
                          "for the role or by a pooler, or an administrator: try again, or raise the "
                          "role's statement_timeout", **fields)
    if sqlstate == "25P03":  # idle_in_transaction_session_timeout
        return SourceBusy(f"{doing}: the server ended the snapshot's idle transaction ({msg}); try "
                          "again, or raise the role's idle_in_transaction_session_timeout", **fields)
    if sqlstate == "53200" or "max_locks_per_transaction" in str(exc):  # out of shared memory
        return SnapError(f"{doing}: the server ran out of lock slots ({msg}); raise the server's "
                         "max_locks_per_transaction (a restart), or export fewer tables a run with "
                         "--tables, or use fewer --jobs (each reader locks every table)", **fields)
    if sqlstate.startswith("57P") or sqlstate.startswith("08") or isinstance(exc, psycopg.OperationalError):
        # 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 08xxx: the
        # connection is gone (restart, pg_terminate_backend, network).
        return ServerUnreachable(f"{doing}: the server closed the connection ({msg}); it was restarted "
                                 "or the session was terminated: try again", **fields)
    return SnapError(f"{doing} failed: {msg}", **fields)


#: A lock wait longer than this fails the export (--lock-timeout; 0 waits for ever). pg_dump
#: waits for ever by default; an unattended export should rather fail and be retried than
#: hold its other locks (and a queue of writers behind them) for as long as a migration runs.
DEFAULT_LOCK_TIMEOUT = 60.0

#: How often the table list may change between listing and locking before the export gives
#: up (each round costs one catalog query and one LOCK statement).
_LOCK_ROUNDS = 5


def _user_options(conninfo: str) -> str:
    """The libpq ``options`` the user gave (the URL's ``?options=``, else ``PGOPTIONS``):
    psycopg's ``options=`` keyword would replace them, so they go first and ours after."""
    try:
        given = psycopg.conninfo.conninfo_to_dict(conninfo).get("options")
    except psycopg.Error:
        given = None
    return str(given if given is not None else os.environ.get("PGOPTIONS", "")).strip()


class PostgresSource(Source):
    dialect = "postgresql"

    def __init__(self, url: Any, *, server_json: bool = True, binary_copy: bool = True,
                 max_readers: int = 8) -> None:
        if _IMPORT_ERROR is not None:
            raise missing_driver("postgresql", _IMPORT_ERROR)
        super().__init__(url)
        self.server_json = server_json
        #: Read binary COPY and write the JSON in C (pgbinary); False: the server builds it.
        self.binary_copy = binary_copy
        self.max_readers = max_readers
        #: Seconds a lock may be awaited (0: for ever); the exporter sets --lock-timeout here.
        self.lock_timeout = DEFAULT_LOCK_TIMEOUT
        self._conn: Any = None
        self._snapshot: str | None = None
        self._version = ""
        self._version_num = 0
        #: Reader connections opened, locked and on the snapshot by list_tables, and whether
        #: the main connection is lent to a reader now.
        self._pool: list[Any] = []
        self._main_lent = False
        self._pool_lock = threading.Lock()
        #: What happened that the user should know (fewer readers than asked, and why).
        self.notices: list[str] = []
        #: The connections that have a temporary table for a segment's closure (made before
        #: their snapshot: _make_closure_table), and the closure each holds now.
        self._closure_tables: dict[Any, Closure | None] = {}

    # -- connections -----------------------------------------------------------------------

    def _connect(self, autocommit: bool = False) -> Any:
        raw = self.url.raw
        scheme, rest = raw.split("://", 1)
        conninfo = "postgresql://" + rest  # libpq does not know "postgresql+psycopg://"
        # Ours after the user's: later -c settings win, and the contract needs ours. The
        # export's own sessions never time out on their own (as pg_dump's): a statement or
        # idle-in-transaction timeout would end the snapshot mid-export; lock waits are
        # bounded by --lock-timeout instead.
        lock_ms = int(self.lock_timeout * 1000)
        options = " ".join(filter(None, [
            _user_options(conninfo), SESSION_OPTIONS,
            f"-c lock_timeout={lock_ms} -c statement_timeout=0 -c idle_in_transaction_session_timeout=0"]))
        try:
            conn = psycopg.connect(
                conninfo,
                options=options,
                application_name="sqlsnap",
                connect_timeout=int(self.url.params.get("connect_timeout", 10)),
                autocommit=autocommit,
            )
        except psycopg.Error as exc:
            raise translate_error(exc, self.url.display) from None
        if not autocommit:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
        for typname in _TEXT_LOADED:
            conn.adapters.register_loader(typname, _TextLoader)
        return conn

    def open(self) -> None:
        """Connect; no statement runs yet, so no snapshot exists: :meth:`list_tables` locks
        the tables first (in a REPEATABLE READ transaction the first query takes the
        snapshot; BEGIN, SET and LOCK TABLE do not)."""
        self._conn = self._connect()
        info = self._conn.info
        self._version_num = int(info.server_version)
        self._version = (info.parameter_status("server_version") or "").split()[0] if \
            info.parameter_status("server_version") else str(self._version_num)

    def close(self) -> None:
        for conn in [*self._pool, self._conn]:
            if conn is not None:
                _end(conn)
        self._pool = []
        self._conn = None
        self._closure_tables.clear()

    def info(self) -> dict[str, Any]:
        info = self._conn.info
        return {
            "dialect": "postgresql",
            "server_version": self._version,
            "database": info.dbname,
            "host": info.host if not info.host.startswith("/") else "localhost",
            "user": info.user or getpass.getuser(),
        }

    # -- the snapshot: lock, then snapshot -------------------------------------------------

    def _started(self) -> bool:
        return bool(self._conn.info.transaction_status != pq.TransactionStatus.IDLE)

    def _list_outside(self, schemas: list[str], defaulted: bool = False) -> list[tuple[int, str, str, str]]:
        """(oid, schema, name, relkind) of the tables to export, read outside the snapshot
        (which does not exist yet), in a short transaction of their own on the main connection
        (not yet in the snapshot's: a connection of its own cost 5-10 ms of every export's
        start). With no --schema given and no table in ``public``, NotFoundError names the
        schemas that have tables (an export of 0 tables, exit 0, looked like success)."""
        side = self._conn
        side.autocommit = True
        try:
            found = {r[0] for r in side.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (schemas,))}
            missing = [s for s in schemas if s not in found]
            if missing:
                raise NotFoundError(
                    f"schema {', '.join(missing)} does not exist in database {side.info.dbname}; "
                    "check --schema", schema=missing[0])
            listed = [(int(o), n, r, k) for o, n, r, k in side.execute(
                "SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s) "
                "ORDER BY c.oid", (schemas,))]
            if not listed and defaulted:
                self._refuse_empty_public(side)
            return listed
        except psycopg.Error as exc:
            raise runtime_error(exc, "listing the tables") from None
        finally:
            if not side.closed and side.info.transaction_status == pq.TransactionStatus.IDLE:
                side.autocommit = False  # the snapshot's transaction comes next

    @staticmethod
    def _refuse_empty_public(side: Any) -> None:
        """NotFoundError naming the schemas that have tables, if any."""
        elsewhere = side.execute(
            "SELECT n.nspname, count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5").fetchall()
        if elsewhere:
            shown = ", ".join(f"{n} ({c} table{'' if c == 1 else 's'})" for n, c in elsewhere)
            raise NotFoundError(f"schema public of database {side.info.dbname} has no table; tables are "
                                f"in schema {shown}: give --schema {elsewhere[0][0]} (repeatable)",
                                schema="public")

    def _lock(self, conn: Any, listed: list[tuple[int, str, str, str]]) -> None:
        """ACCESS SHARE on every listed table, as pg_dump takes: TRUNCATE, ALTER and DROP
        then wait for the export. Plain tables ONLY (inheritance children are tables of
        their own); a partitioned table with its partitions."""
        if not listed:
            return
        names = ", ".join(f"{'ONLY ' if k == 'r' else ''}{_quote(n)}.{_quote(r)}" for _, n, r, k in listed)
        conn.execute(f"LOCK TABLE {names} IN ACCESS SHARE MODE")

    def list_tables(self, schemas: Sequence[str] | None) -> list[Table]:
        """The tables, reflected in the snapshot, which is taken only once they are locked.

        TRUNCATE is not MVCC-safe: a snapshot taken before it commits sees the table empty
        afterwards. So the tables are listed on another connection, locked in the reading
        transaction (which waits for a TRUNCATE in progress to commit), and only then does
        the first query take the snapshot; a TRUNCATE that comes later waits for the
        export. The list read in the snapshot must equal the list locked (a table created,
        dropped or renamed in between: list and lock again). The readers lock too, before
        they adopt the snapshot (docs/reliability.md)."""
        defaulted = not schemas
        schemas = list(schemas or ["public"])
        if self._started():  # the snapshot exists: a second look at the catalog
            return self._reflect(schemas)[0]
        if self.keep_closure and self._make_closure_table(self._conn):
            # The closure is kept by the main connection alone: other connections cannot see its
            # temporary table, and each would evaluate the closure again (bench/README.md).
            self.max_readers = 1
        for _ in range(_LOCK_ROUNDS):
            listed = self._list_outside(schemas, defaulted)
            try:
                self._lock(self._conn, listed)
                readers = self._open_readers(listed)
                tables, oids = self._reflect(schemas)
            except psycopg.errors.UndefinedTable:  # dropped or renamed since listed
                self._reset()
                continue
            except psycopg.Error as exc:
                self._reset()
                raise runtime_error(exc, f"locking {self._blocked(listed)}", self.lock_timeout) from None
            if oids == {o for o, *_ in listed}:
                self._share_snapshot(readers)
                return tables
            for conn in readers:
                conn.close()
            self._reset()
        raise SourceBusy(f"the tables of schema {', '.join(schemas)} kept changing (created, dropped or "
                         "renamed) while the export started; try again")

    def _make_closure_table(self, conn: Any) -> bool:
        """A temporary table for a segment's closure (``pg_temp.sqlsnap_closure``), made before
        the snapshot's transaction starts: a read-only transaction may write a temporary table
        but not create one. None on a standby (``pg_is_in_recovery()``: no temporary table can
        exist there) or where the role may not create one (no TEMPORARY privilege, a read-only
        default): the closure is then evaluated in every query that needs it, as it is."""
        conn.autocommit = True  # our own short transaction, not the snapshot's read-only one
        try:
            if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                return False
            # Indexed on the table's node: each table read picks its rows out of the closure,
            # 16 reads for the demo (with it, picking the benchmark tenant's rows took 7-9 ms in
            # all instead of 14-15 ms, and 66-84 ms instead of 148-197 ms for 10% of the rows).
            conn.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_CLOSURE_TABLE} "
                         "(t integer NOT NULL, m integer NOT NULL, k text[] NOT NULL, c tid NOT NULL); "
                         f"CREATE INDEX IF NOT EXISTS sqlsnap_closure_t ON {_CLOSURE_TABLE} (t)")
        except psycopg.Error:
            return False
        finally:
            conn.autocommit = False
        self._closure_tables[conn] = None
        return True

    def _blocked(self, listed: list[tuple[int, str, str, str]]) -> str:
        """Which tables another session holds an exclusive lock on, for the message."""
        try:
            side = self._connect(autocommit=True)
            try:
                oids = [r[0] for r in side.execute(
                    "SELECT DISTINCT relation FROM pg_locks WHERE granted AND relation = ANY(%s) "
                    "AND mode = 'AccessExclusiveLock' AND pid <> pg_backend_pid()",
                    ([o for o, *_ in listed],))]
            finally:
                side.close()
        except (psycopg.Error, SnapError):
            oids = []
        names = [f"{n}.{r}" for o, n, r, _ in listed if o in oids]
        if not names:
            return "the tables to export"
        return "table " + ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    def _reset(self) -> None:
        try:
            self._conn.rollback()
        except psycopg.Error as exc:
            raise runtime_error(exc, "starting the snapshot") from None
        self.details.clear()

    def _open_readers(self, listed: list[tuple[int, str, str, str]]) -> list[Any]:
        """The other readers' connections, each holding the same locks before the snapshot
        exists (so a TRUNCATE can never queue between the export's lock and a reader's).
        Fewer when the server has no free connection slot (said in ``notices``)."""
        wanted = min(self.max_readers, max(1, len(listed))) - 1
        conns: list[Any] = []
        for _ in range(wanted):
            try:
                conn = self._connect()
            except SnapError as exc:
                if not conns and self.max_readers > 1:
                    self.notices.append(f"reading with 1 connection instead of {wanted + 1}: {exc}")
                else:
                    self.notices.append(f"reading with {len(conns) + 1} connections instead of "
                                        f"{wanted + 1}: {exc}")
                break
            conns.append(conn)
            try:
                self._lock(conn, listed)
            except BaseException:
                for c in conns:
                    c.close()
                raise
        self.max_readers = len(conns) + 1
        return conns

    def _share_snapshot(self, readers: list[Any]) -> None:
        """Export the main connection's snapshot to the reader connections opened beside it."""
        if not readers and self.max_readers <= 1:
            self.max_readers = 1
            if self.binary_copy and any(d.get("huge") for d in self.details.values()):
                # One reader too, to read large values beside its COPY (side_connection); not
                # on a hot standby, which cannot export it (such values are then read whole).
                # (A savepoint cannot guard it: no snapshot is exported from a subtransaction.)
                try:
                    self._snapshot = self._conn.execute(
                        "SELECT CASE WHEN NOT pg_is_in_recovery() THEN pg_export_snapshot() END"
                    ).fetchone()[0]
                except psycopg.Error as exc:
                    raise runtime_error(exc, "sharing the snapshot") from None
            return
        try:
            self._snapshot = self._conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        except psycopg.Error:
            # A hot standby cannot export snapshots: fall back to one reader.
            self._conn.rollback()
            raise SourceBusy("a hot standby cannot share its snapshot between readers; use --jobs 1") \
                from None
        try:
            for conn in readers:
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self._snapshot)))
        except psycopg.Error as exc:
            for conn in readers:
                conn.close()
            raise runtime_error(exc, "sharing the snapshot") from None
        self._pool = readers

    # -- schema ----------------------------------------------------------------------------

    def _reflect(self, schemas: list[str]) -> tuple[list[Table], set[int]]:
        """The tables of ``schemas`` as the snapshot sees them (this takes it), and their oids."""
        cur = self._conn.cursor()
        default = schemas[0] if len(schemas) == 1 else "public"
        several = len(schemas) > 1

        def part(name: str) -> str:
            # With several schemas a dot separates schema from table, so a name holding a dot
            # (or a quote) is quoted as SQL quotes it: otherwise public."audit.events" and
            # audit.events would both be audit.events, and one of them would be lost.
            return _quote(name) if several and ("." in name or '"' in name) else name

        def display(nsp: str, rel: str) -> str:
            return part(rel) if nsp == default else f"{part(nsp)}.{part(rel)}"

        tables: dict[int, Table] = {}
        huge: dict[int, list[int]] = {}
        rows = cur.execute(
            """
            SELECT c.oid, n.nspname, c.relname, c.relkind, GREATEST(c.reltuples, -1)::bigint,
                   c.relpages, (c.relpages + COALESCE(tc.relpages, 0))::bigint
                   * current_setting('block_size')::int,
                   a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
                   t.typname, t.typtype, t.typcategory,
                   e.typname, e.typtype, bt.typname, bt.typtype, bt.typcategory, be.typname, be.typtype
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            LEFT JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
            LEFT JOIN pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd'
            LEFT JOIN pg_type be ON be.oid = bt.typelem AND bt.typcategory = 'A'
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)
            ORDER BY n.nspname, c.relname, a.attnum
            """,
            (schemas,),
        ).fetchall()
        plans: dict[int, list[_ColumnPlan]] = {}
        binary: dict[int, list[tuple[str, int]]] = {}
        for (oid, nsp, rel, relkind, est, pages, size, att, fmt, nullable_, tname, ttype, tcat,
             ename, etype, btname, bttype, btcat, bename, betype) in rows:
            if btname is not None:  # a domain: read it as its base type
                tname, ttype, tcat, ename, etype = btname, bttype, btcat, bename, betype
            table = tables.get(oid)
            if table is None:
                # relkind 'p' (partitioned) reads through all partitions; plain tables use
                # ONLY so that old-style inheritance children are not exported twice.
                table = tables[oid] = Table(
                    display(nsp, rel), nsp, rel, [], estimated_rows=None if est < 0 else est,
                    estimated_bytes=size or None,
                )
                plans[oid] = []
                binary[oid] = []
                self.details[table.name] = {"only": relkind == "r", "pages": pages}
            if att is None:  # a table without columns (the LEFT JOIN keeps it): rows are {}
                continue
            if tcat == "A" and ename is not None:
                ekind = _kind(ename, etype)
                if ename in ("bpchar", "inet"):
                    plan = _plan_column(att, f"{ename}_array", None)
                elif ekind == "json":  # each element as stored, as a json column (see "json_array")
                    plan = _plan_column(att, "json_array", None)
                elif ekind in _NATIVE_ELEMENTS:
                    plan = _plan_column(att, "array", ekind)
                else:
                    plan = _plan_column(att, "text_array", None)
            else:
                plan = _plan_column(att, _kind(tname, ttype), None)
            plans[oid].append(plan)
            binary[oid].append(pgbinary.column(att, tname, ttype, plan.kind, plan.element, ename,
                                               plan.server_expr, self._version_num))
            if tname in _HUGE_TYPES and binary[oid][-1][0] == _quote(att) and relkind == "r":
                huge.setdefault(oid, []).append(len(plans[oid]) - 1)
            table.columns.append(Column(att, fmt, nullable_, "base64" if plan.kind == "bytea" else None))
        for oid, table in tables.items():
            self.details[table.name]["plans"] = plans[oid]
            self.details[table.name]["binary"] = binary[oid]
            self.details[table.name]["indexed"] = set()
            self.details[table.name]["huge"] = None
        # The columns that lead a usable index (not partial, not an expression), for a segment's
        # steps down a foreign key (_PostgresSegment.indexed).
        for oid, column in cur.execute(
            "SELECT i.indrelid, a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = i.indkey[0] WHERE i.indrelid = ANY(%s) AND i.indisvalid AND i.indpred IS NULL",
            (list(tables),),
        ):
            self.details[tables[oid].name]["indexed"].add(column)
        self._huge_columns(cur, tables, huge)

        for oid, cols in cur.execute(
            """
            SELECT con.conrelid, array_agg(a.attname ORDER BY k.ord)
            FROM pg_constraint con
            CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
            WHERE con.contype = 'p' AND con.conrelid = ANY(%s)
            GROUP BY con.oid, con.conrelid
            """,
            (list(tables),),
        ):
            tables[oid].primary_key = list(cols)
        for oid, cols, ref_nsp, ref_rel, ref_cols in cur.execute(
            """
            SELECT con.conrelid,
                   array_agg(a.attname ORDER BY k.ord), rn.nspname, rc.relname,
                   array_agg(ra.attname ORDER BY k.ord)
            FROM pg_constraint con
            CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(attnum, refnum, ord)
            JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
            JOIN pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = k.refnum
            JOIN pg_class rc ON rc.oid = con.confrelid
            JOIN pg_namespace rn ON rn.oid = rc.relnamespace
            WHERE con.contype = 'f' AND con.conrelid = ANY(%s) AND con.conparentid = 0
            GROUP BY con.oid, con.conrelid, rn.nspname, rc.relname
            ORDER BY con.conname
            """,
            (list(tables),),
        ):
            tables[oid].foreign_keys.append(
                ForeignKey(tuple(cols), display(ref_nsp, ref_rel), tuple(ref_cols)))
        return list(tables.values()), set(tables)

    def _huge_columns(self, cur: Any, tables: dict[int, Table], candidates: dict[int, list[int]]) -> None:
        """details' ``huge``: the text and bytea columns whose values over HUGE_VALUE the binary
        COPY leaves out, to be read in pieces (``_PostgresReader._huge_row``), for the tables
        whose TOAST table holds anything. A row must fit in a page (8 kB) and a value over 16
        MiB does not, even compressed (pglz shrinks at most about 90 times, lz4 255), so it
        lives in the TOAST table: a table whose TOAST table is empty holds none, and its COPY
        stays as it was (the check costs the server about 10% on a table of three text
        columns). pg_relation_size() releases its lock at once (no lock slot is kept)."""
        if not candidates:
            return
        for oid, toast_bytes in cur.execute(
                "SELECT c.oid, pg_relation_size(c.reltoastrelid) FROM pg_class c "
                "WHERE c.oid = ANY(%s) AND c.reltoastrelid <> 0", (list(candidates),)):
            if toast_bytes:
                self.details[tables[oid].name]["huge"] = candidates[oid]

    def side_connection(self) -> Any:
        """A connection on the export's snapshot, for a reader to read a row's large values in
        pieces while its COPY runs; None when the snapshot was not exported (a hot standby)."""
        return None if self._snapshot is None else self._join_snapshot()

    def _join_snapshot(self) -> Any:
        """A new connection on the exported snapshot."""
        conn = self._connect()
        try:
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self._snapshot)))
        except psycopg.Error as exc:
            conn.close()
            raise runtime_error(exc, "joining the export's snapshot") from None
        return conn

    def split(self, table: Table, part_bytes: int) -> list[Part]:
        """Ranges of the heap's pages (``ctid``) of about ``part_bytes`` each, read by a TID
        range scan (PostgreSQL 14+); tables under two parts are read whole. The last range is
        left open, so the ranges cover the table whatever its size: the page count is the
        catalog's estimate (``relpages``, which takes no lock), and only sizes the ranges; no
        row is missed or read twice."""
        details = self.details[table.name]
        pages = details["pages"]
        size = table.estimated_bytes or 0
        parts = min(size // max(1, part_bytes), pages)
        if parts < 2 or self._version_num < 140000 or not details["only"]:
            return []
        bounds: list[int | None] = [None, *(pages * i // parts for i in range(1, parts)), None]
        rows = (table.estimated_rows or 0) // parts or None
        share = size // parts or None
        return [Part(i, parts, (lo, hi), rows, share) for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]

    # -- reading ---------------------------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator[TableReader]:
        """A reader on the snapshot: the main connection when it is free (it holds the locks
        already), else one of the connections list_tables opened beside it, else a new one
        (which then locks each table as it reads it)."""
        conn, kind = self._take()
        failed = False
        # Large values are read in pieces only on a snapshot that other connections can join.
        reader = _PostgresReader(conn, self.server_json, self.details, self.binary_copy,
                                 self.lock_timeout, self._closure_tables,
                                 self.side_connection if self._snapshot else None)
        try:
            yield reader
        except BaseException:
            failed = True
            raise
        finally:
            reader.close_side()
            self._give_back(conn, kind, failed)

    def _take(self) -> tuple[Any, str]:
        with self._pool_lock:
            if not self._main_lent:
                self._main_lent = True
                return self._conn, "main"
            if self._pool:
                return self._pool.pop(), "pool"
        if self._snapshot is None:
            raise SnapError("internal: a second reader without a shared snapshot")
        return self._join_snapshot(), "new"

    def _give_back(self, conn: Any, kind: str, failed: bool) -> None:
        """A connection still in its snapshot transaction goes back for the next reader."""
        healthy = not failed and not conn.closed and \
            conn.info.transaction_status == pq.TransactionStatus.INTRANS
        with self._pool_lock:
            if kind == "main":
                self._main_lent = False
                return
            if healthy:
                self._pool.append(conn)
                return
        _end(conn)


def _end(conn: Any) -> None:
    """Roll back (the snapshot only read) and close. A connection still in a COPY that a failed
    write abandoned cannot roll back; it is closed all the same (it leaked, and its
    ResourceWarning failed a later test)."""
    try:
        conn.rollback()
    except psycopg.Error:
        pass
    finally:
        conn.close()


#: The temporary table that keeps a segment's closure: ``(t, m, k, c)``, a row's node, whether
#: it was reached downwards (1) or only as a parent (0), its key as text and its ``ctid``.
_CLOSURE_TABLE = "pg_temp.sqlsnap_closure"


def _table_name(table: Table) -> str:
    return f"{_quote(table.schema)}.{_quote(table.relname)}"


class _PostgresSegment(SegmentSQL):
    null_safe_eq = "IS NOT DISTINCT FROM"

    def __init__(self, server_version: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(_quote, _table_name)
        if server_version >= 120000:
            self.materialized = "MATERIALIZED "
        self.details = details or {}

    def indexed(self, table: Table, columns: Sequence[str]) -> bool:
        return bool(set(columns) & self.details.get(table.name, {}).get("indexed", set()))

    def to_key(self, expr: str, column: Column) -> str:
        return f"CAST({expr} AS text)"

    def null_key(self) -> str:
        return "NULL::text"

    def json_text(self, expr: str, path: str) -> str:
        # $.a.b[0] -> '{a,b,0}': the path checked by JSON_PATH holds no quote or comma.
        steps = path[1:].replace("[", ".").replace("]", "").strip(".").split(".")
        return f"(CAST({expr} AS jsonb) #>> '{{{','.join(steps)}}}')"

    def bucket(self, seed: str, keys: Sequence[str]) -> str:
        # hashtextextended: PostgreSQL 11+, the 64-bit hash of text with a seed.
        text = ", ".join(f"CAST({k} AS text)" for k in keys)
        return f"abs(hashtextextended(concat_ws(',', {text}), {seed}) % {BUCKETS})"

    def from_key(self, expr: str, column: Column) -> str:
        # The column's own type (format_type's spelling), so the comparison uses its index.
        return f"CAST({expr} AS {column.type})"


class _PostgresReader(TableReader):
    def __init__(self, conn: Any, server_json: bool, details: dict[str, Any],
                 binary_copy: bool = True, lock_timeout: float | None = None,
                 closure_tables: dict[Any, Closure | None] | None = None,
                 side_connection: Callable[[], Any] | None = None) -> None:
        self.conn = conn
        self.closure_tables = closure_tables if closure_tables is not None else {}
        #: Opens the connection that reads large values in pieces (_huge_row), on first need.
        self.side_connection = side_connection
        self._side: Any = None
        self.server_json = server_json
        self.details = details
        # The decoder writes UTF-8 and checks that text is: with another client encoding
        # (a LATIN1 database, say) the server builds the JSON, as before issue 12.
        self.binary_copy = binary_copy and _PGCOPY is not None and conn.info.encoding == "utf-8"
        self._jit_off = False
        self.lock_timeout = lock_timeout

    def _segment_session(self, request: ReadRequest | None = None) -> None:
        """Before a segment's query: JIT off for the rest of the snapshot's transaction. The
        query has a branch per edge and direction, and its estimated cost passes the JIT's
        thresholds: on the benchmark database (scale 100) JIT spent 9.2 s of 11.7 s compiling
        the closure's 560 functions, for a query that runs in 0.2 s without it."""
        if self._jit_off or (request is not None and request.segment is None):
            return
        with self.conn.cursor() as cur:
            cur.execute("SET LOCAL jit = off")
        self._jit_off = True

    def _segment_sql(self) -> _PostgresSegment:
        return _PostgresSegment(self.conn.info.server_version, self.details)

    def _bind(self, value: Any) -> str:
        return str(sql.Literal(value).as_string(self.conn))

    def _kept(self, closure: Closure) -> bool:
        """Whether ``closure``'s rows are in this connection's temporary table, filling it on
        first use: one evaluation of the closure for the whole export, instead of one per
        query (the count and every table read)."""
        if self.conn not in self.closure_tables:
            return False
        if self.closure_tables[self.conn] is closure:
            return True
        self._segment_session()
        with self.conn.cursor() as cur:
            if cur.execute(f"SELECT to_regclass('{_CLOSURE_TABLE}')").fetchone()[0] is None:
                # Made on another server session: a pooler in transaction mode hands each
                # transaction to any of its sessions. Evaluated in each query instead.
                del self.closure_tables[self.conn]
                return False
            if self.closure_tables[self.conn] is not None:
                cur.execute(f"DELETE FROM {_CLOSURE_TABLE}")
            self.closure_tables[self.conn] = None
            cur.execute(f"INSERT INTO {_CLOSURE_TABLE} (t, m, k, c) "
                        + render_segment_sets_rows(closure, self._segment_sql(), self._bind, counts=False))
        self.closure_tables[self.conn] = closure
        return True

    def _in_segment(self, segment: SegmentRead) -> str:
        """The condition "this row is in the segment" on the table read."""
        if segment.seeds_only:
            return render_segment(segment, self._segment_sql(), self._bind)
        table = segment.closure.tables[segment.node]
        # By ctid, a TID scan, where ctids are unique (not across a partitioned table's
        # partitions): it fetches the rows in the table's order (it sorts the ctids), each once,
        # as a full export reads them (docs/format.md). The ctid of a row version this snapshot
        # sees stays its own while the snapshot lasts (nothing it sees may be pruned).
        by_ctid = self.details[table.name]["only"]
        if not self._kept(segment.closure):
            cond = render_segment_sets(segment, self._segment_sql(), self._bind)
            return f"ctid = ANY(ARRAY(SELECT ctid FROM ONLY {_table_name(table)} WHERE {cond}))" \
                if by_ctid else cond
        if not segment.key:
            return "1 = 0"  # a table without a key holds no row of the segment (build_closure)
        kept = f"FROM {_CLOSURE_TABLE} WHERE t = {segment.node}{' AND m = 0' if segment.parents_only else ''}"
        if by_ctid:
            return f"ctid = ANY(ARRAY(SELECT c {kept}))"
        # A partitioned table's ctids repeat from one partition to the next: by key.
        cols = {c.name: c for c in table.columns}
        keys = ", ".join(_quote(c) for c in segment.key)
        typed = ", ".join(f"CAST(k[{j + 1}] AS {cols[c].type})" for j, c in enumerate(segment.key))
        return f"({keys}) IN (SELECT {typed} {kept})"

    def cancel(self) -> None:
        try:
            self.conn.cancel_safe(timeout=5)
        except Exception:  # noqa: BLE001 - best effort while already failing
            pass

    def _from(self, request: ReadRequest) -> str:
        """The FROM clause of the request: the table, the part's page range (a TID range
        scan) and the row filter, its values quoted by psycopg (COPY takes no parameters)."""
        table = request.table
        only = "ONLY " if self.details[table.name]["only"] else ""
        where: list[str] = []
        if request.part is not None:
            lo, hi = request.part.bounds
            if lo is not None:
                where.append(f"ctid >= '({int(lo)},0)'::tid")
            if hi is not None:
                where.append(f"ctid < '({int(hi)},0)'::tid")
        if request.row_filter is not None:
            where.append(render_filter(request.row_filter, _quote, self._bind))
        if request.segment is not None:
            where.append(self._in_segment(request.segment))
        return f"{only}{_quote(table.schema)}.{_quote(table.relname)}" + \
            (f" WHERE {' AND '.join(where)}" if where else "")

    def read(self, request: ReadRequest, cancel: threading.Event) -> Iterator[tuple[bytes, int]]:
        table, projection = request.table, request.projection
        plans = self.details[table.name]["plans"]
        try:
            self._segment_session(request)
            if self.server_json and self.binary_copy and _server_can_project(plans, projection):
                yield from self._read_binary(request, cancel)
            elif self.server_json and _server_can_project(plans, projection):
                yield from self._read_server_json(request, cancel)
            else:
                yield from self._read_portable(request, cancel)
        except psycopg.Error as exc:
            if cancel.is_set():
                raise Cancelled from None
            raise runtime_error(exc, f"reading table {table.name}", self.lock_timeout, table=table.name) \
                from None

    def server_sql(self, request: ReadRequest, projection: Projection | None = None,
                   binary: bool = False) -> str:
        table = request.table
        plans: list[_ColumnPlan] = self.details[table.name]["plans"]
        if projection is not None:
            return _projected_copy(table, plans, projection, self._from(request))[0]
        cols = ", ".join(f"{p.server_expr} AS {_quote(c.name)}" for p, c in zip(plans, table.columns))
        return (
            # "r.*" and not "r": a column named like the alias would win over the whole row.
            f"COPY (SELECT row_to_json(r.*) FROM (SELECT {cols} FROM {self._from(request)}) r) "
            + ("TO STDOUT (FORMAT binary)" if binary else _COPY_OPTIONS)
        )

    def _read_server_json(self, request: ReadRequest, cancel: threading.Event) -> Iterator[tuple[bytes, int]]:
        table, projection = request.table, request.projection
        # libpq hands over one row per PQgetCopyData call in CSV mode. psycopg's Copy object
        # costs ~4 us of Python per row (a generator and a wait loop); calling libpq through
        # psycopg's pq wrapper directly costs a fraction of that, which let the export keep
        # pace with the server (see bench/README.md).
        #
        # Non-blocking: psycopg's pq wrapper holds the GIL inside libpq, so a blocking
        # PQgetCopyData/PQgetResult stalls every other thread while this one waits for the
        # server (two readers stalled each other, and Ctrl-C waited on a lock wait). Waiting
        # in select() instead releases the GIL (bench/README.md); it is the loop of psycopg's
        # own copy generator (get_copy_data(1), wait for the socket, consume_input), without
        # its per-row generator.
        pgconn = self.conn.pgconn
        # The C reader reads the whole rows' json as binary COPY: the same text, which the
        # server then sends without scanning it for CSV quoting (sqlsnap/_pgcopy.c). A
        # policy's projection is read as CSV lines, in C too when it is there.
        binary = projection is None and _PGCOPY is not None
        copy_sql, splice = (self.server_sql(request, binary=binary), None) if projection is None else \
            _projected_copy(table, self.details[table.name]["plans"], projection, self._from(request))
        pgconn.send_query(copy_sql.encode())
        result = _get_result(pgconn)
        if result is None or result.status != pq.ExecStatus.COPY_OUT:
            self._drain(pgconn)
            raise psycopg.errors.DataError(_result_error(result))
        if _PGCOPY is not None:
            chunks = self._read_copy_in_c(table, pgconn, cancel, binary)
            if splice is None:
                yield from chunks
            else:
                # One CSV line a row: JSON escapes every newline inside a field (splice).
                for data, rows in chunks:
                    csv_lines = data.split(b"\n")
                    csv_lines.pop()  # after the last newline
                    yield b"".join([splice(line) for line in csv_lines]), rows
            return
        get_copy_data = pgconn.get_copy_data
        lines: list[Any] = []
        append = lines.append
        size = 0
        while True:
            nbytes, data = get_copy_data(1)
            if nbytes > 0:
                # One join per chunk: growing a bytearray row by row copied every byte again
                # at each reallocation.
                append(data if splice is None else splice(bytes(data)[:-1]))
                size += nbytes
                if size >= CHUNK_BYTES:
                    if cancel.is_set():
                        self._abandon_copy(pgconn)
                        raise Cancelled
                    yield b"".join(lines), len(lines)
                    lines.clear()
                    size = 0
            elif nbytes == 0:
                _wait_readable(pgconn)
                pgconn.consume_input()
            else:
                break
        self._end_copy(pgconn)
        if lines:
            yield b"".join(lines), len(lines)

    def _read_copy_in_c(
        self, table: Table, pgconn: Any, cancel: threading.Event, binary: bool
    ) -> Iterator[tuple[bytes, int]]:
        """The Python loop of _read_server_json, in C (sqlsnap/_pgcopy.c): a chunk of lines
        per call, read without the GIL; ``binary``: the COPY is FORMAT binary of one column,
        else CSV."""
        read_chunk, address, more = _PGCOPY.read_chunk, pgconn.pgconn_ptr, _PGCOPY.MORE
        wait_ms = int(_WAIT_SECONDS * 1000)
        while True:
            status, data, rows = read_chunk(address, CHUNK_BYTES, wait_ms, binary)
            if rows:
                yield data, rows
            if status != more:
                break
            if cancel.is_set():
                self._abandon_copy(pgconn)
                raise Cancelled
        if status == _PGCOPY.BAD:
            self._abandon_copy(pgconn)
            raise psycopg.errors.DataError(f"unexpected binary COPY data from the server for {table.name}")
        self._end_copy(pgconn)

    def _read_binary(self, request: ReadRequest, cancel: threading.Event) -> Iterator[tuple[bytes, int]]:
        """Binary COPY of the stored columns, each tuple written as JSON in C without the GIL
        (sources/pgbinary.py, sqlsnap/_pgdecode.c)."""
        table = request.table
        details = self.details[table.name]
        plan = pgbinary.Plan(table, details["binary"], [p.kind for p in details["plans"]],
                             self._from(request), request.projection,
                             details["huge"] if self.side_connection else None, HUGE_VALUE)
        program = _PGCOPY.program(plan.codes, plan.ops, plan.mark)
        take_marked = _PGCOPY.take_marked
        pgconn = self.conn.pgconn
        pgconn.send_query(plan.sql.encode())
        result = _get_result(pgconn)
        if result is None or result.status != pq.ExecStatus.COPY_OUT:
            self._drain(pgconn)
            raise psycopg.errors.DataError(_result_error(result))
        read_binary, address, more = _PGCOPY.read_binary, pgconn.pgconn_ptr, _PGCOPY.MORE
        wait_ms = int(_WAIT_SECONDS * 1000)
        splice = plan.splice
        while True:
            status, data, rows, reason = read_binary(address, CHUNK_BYTES, wait_ms, program)
            if status == _PGCOPY.BAD:
                self._abandon_copy(pgconn)
                raise psycopg.errors.DataError(f"malformed binary COPY data from the server for "
                                               f"{table.name}: {reason}")
            if rows:
                if plan.huge and take_marked(program):
                    try:
                        yield from self._with_huge_rows(table, data, cancel)
                    except Exception:  # cancelled, or the side connection failed: end the COPY
                        self._abandon_copy(pgconn)
                        raise
                elif splice is None:
                    yield data, rows
                else:
                    lines = data.split(b"\n")
                    lines.pop()  # after the last newline
                    yield b"".join([splice(line) for line in lines]), rows
            if status != more:
                break
            if cancel.is_set():
                self._abandon_copy(pgconn)
                raise Cancelled
        self._end_copy(pgconn)

    def _with_huge_rows(self, table: Table, data: bytes,
                        cancel: threading.Event) -> Iterator[tuple[bytes, int]]:
        """A chunk of the binary COPY's lines in which some rows' large values were left out
        (their lines marked, pgbinary.HUGE_LINE_MARK): the lines before each as a chunk, then
        that row in pieces."""
        lines = data.split(b"\n")
        lines.pop()  # after the last newline
        held: list[bytes] = []
        for line in lines:
            if not line.endswith(b'"'):
                held.append(line + b"\n")
                continue
            if held:
                yield b"".join(held), len(held)
                held.clear()
            yield from row_in_pieces(self._huge_row(table, line), cancel)
        if held:
            yield b"".join(held), len(held)

    def _huge_row(self, table: Table, line: bytes) -> Iterator[bytes]:
        """The line of a row whose large text or bytea values were left out, with them read
        in pieces on a connection of the same snapshot (the reader's own is busy with its
        COPY): ``substring()`` fetches only the TOAST chunks a piece needs where the value is
        stored uncompressed; compressed, each piece decompresses the value up to its end."""
        if self._side is None:
            # Its SELECTs take ACCESS SHARE locks, which queue behind a TRUNCATE that waits for
            # the export's own locks: that ends in --lock-timeout (SourceBusy), never a hang.
            self._side = self.side_connection()  # type: ignore[misc]
        end = line.rindex(b'"', 0, -1)  # the ctid's opening quote
        ctid = msgspec.json.decode(line[end:])
        fields = msgspec.json.decode(line[:end], type=dict[str, msgspec.Raw])
        details = self.details[table.name]
        places = details["huge"]
        name = f"ONLY {_table_name(table)}"
        columns = table.columns
        cols = ", ".join(f"octet_length({_quote(columns[i].name)}) > {HUGE_VALUE}" for i in places)
        with self._side.cursor() as cur:
            flags = cur.execute(f"SELECT {cols} FROM {name} WHERE ctid = %s::tid", (ctid,)).fetchone()
        left_out = {i for i, flag in zip(places, flags) if flag}
        head = b"{"
        for i, column in enumerate(columns):
            key = head + pgbinary.json_string(column.name) + b":"
            head = b","
            if i not in left_out:
                yield key + bytes(fields[column.name])
                continue
            yield key
            yield from self._value_in_pieces(name, column.name, ctid, details["plans"][i].kind == "bytea")
        yield b"}\n"

    def _value_in_pieces(self, name: str, column: str, ctid: str, bytea: bool) -> Iterator[bytes]:
        """One text or bytea value's JSON, PG_PIECE_BYTES at a time, as the decoder writes it
        (text escaped as the server's escape_json, which msgspec's escaping equals; bytea as
        base64, in pieces of a multiple of 3 bytes)."""
        step = PG_PIECE_BYTES - PG_PIECE_BYTES % 3
        slice_ = CHUNK_BYTES - CHUNK_BYTES % 3
        query = f"SELECT substring({_quote(column)} from %s for %s) FROM {name} WHERE ctid = %s::tid"
        yield b'"'
        at = 1
        with self._side.cursor(binary=bytea) as cur:
            while True:
                piece = cur.execute(query, (at, step, ctid)).fetchone()[0]
                if not piece:
                    break
                at += len(piece)
                # Written a chunk at a time: the writer and its queues hold a few chunks, not a
                # few pieces.
                for start in range(0, len(piece), slice_):
                    part = piece[start:start + slice_]
                    yield base64.b64encode(part) if bytea else ENCODER.encode(part)[1:-1]
                del piece
        yield b'"'

    def close_side(self) -> None:
        if self._side is not None:
            try:
                self._side.close()
            except psycopg.Error:
                pass
            self._side = None

    def _abandon_copy(self, pgconn: Any) -> None:
        """Cancel the COPY on the server, or the drain would read the rest of the table."""
        self.cancel()
        self._drain(pgconn)

    @classmethod
    def _end_copy(cls, pgconn: Any) -> None:
        """After the COPY's last row: its result, which must say it succeeded."""
        result = _get_result(pgconn)
        cls._drain(pgconn)
        if result is None or result.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.errors.DataError(_result_error(result))

    @staticmethod
    def _drain(pgconn: Any) -> None:
        """Consume what is left of a COPY so the connection can be used (or closed) again."""
        try:
            while (n := pgconn.get_copy_data(1)[0]) >= 0:
                if n == 0:
                    _wait_readable(pgconn)
                    pgconn.consume_input()
        except psycopg.Error:
            pass
        try:
            while _get_result(pgconn) is not None:
                pass
        except psycopg.Error:
            pass

    def segment_counts(self, closure: Closure) -> dict[int, tuple[int, int]] | None:
        try:
            self._segment_session()
            query = f"SELECT t, count(*), sum(CASE WHEN m = 0 THEN 1 ELSE 0 END) FROM {_CLOSURE_TABLE} " \
                "GROUP BY t" if self._kept(closure) else \
                render_segment_sets_rows(closure, self._segment_sql(), self._bind, counts=True)
            with self.conn.cursor() as cur:
                return {int(t): (int(n), int(p)) for t, n, p in cur.execute(query).fetchall()}
        except psycopg.Error as exc:
            raise SnapError(f"counting the segment's rows failed: {mask(str(exc).strip().splitlines()[0])}") \
                from None

    def count(self, request: ReadRequest) -> int:
        self._segment_session(request)
        try:
            with self.conn.cursor() as cur:
                row = cur.execute(f"SELECT count(*) FROM {self._from(request)}").fetchone()
        except psycopg.Error as exc:
            raise runtime_error(exc, f"counting the rows of {request.table.name}", self.lock_timeout,
                                table=request.table.name) from None
        return int(row[0])

    def _read_portable(self, request: ReadRequest, cancel: threading.Event) -> Iterator[tuple[bytes, int]]:
        table, projection = request.table, request.projection
        plans: list[_ColumnPlan] = self.details[table.name]["plans"]
        read = plans if projection is None else [plans[i] for i in projection.reads]
        exprs = ", ".join(p.portable_expr for p in read) or "NULL"
        names = [c.name for c in table.columns]
        converters = [_converter(p) for p in plans]
        # Rows in flight cost memory by their size: size the fetches by bytes, from the
        # catalog's bytes per row, so that a batch is about a chunk (2,000 rows of the
        # benchmark's 3 KB AI logs peaked at 131 MB with two readers).
        per_row = (table.estimated_bytes or 0) // max(1, table.estimated_rows or 0)  # a part's alike
        fetch = max(100, min(FETCH_ROWS, CHUNK_BYTES // per_row)) if per_row else FETCH_ROWS
        with self.conn.cursor() as cur:
            rows = cur.stream(f"SELECT {exprs} FROM {self._from(request)}", size=fetch)

            def take(n: int) -> list[Any]:
                return list(islice(rows, n))

            # A table without columns selects NULL; zip() with no names makes each row {}.
            yield from chunked_rows(take, names, converters, cancel, projection)


# -- projections (export policies) on the server-JSON path -----------------------------------
#
# Dropped columns are left out of the SELECT and null/redact become SQL literals, so the
# server still builds every row. Columns whose rule needs Python (hash, fake, mask...) are
# cut out of the row: the server sends the row as JSON segments between them plus each such
# value on its own, as CSV fields, and Python splices the transformed values back in column
# order. Only those fields are decoded; the rest of the row passes through as bytes, so a
# table pays per row for its transformed columns only (tests/test_policy.py checks that
# the bytes equal the portable path's).

_COPY_OPTIONS = "TO STDOUT (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
_JSON_DECODE = msgspec.json.decode


def _server_can_project(plans: list[_ColumnPlan], projection: Projection | None) -> bool:
    """Arrays decode differently from JSON than from the driver: transform them in Python."""
    if projection is None:
        return True
    return not any(plans[i].kind == "array" for c in projection.columns if c.transform is not None
                   for i in (c.source, c.owner) if i is not None)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL::text"
    return "'" + str(value).replace("'", "''") + "'::text"


def _field(plan: _ColumnPlan, ref: str) -> tuple[str, Any]:
    """SQL for one value sent on its own, and the decoder that gives the portable path's value."""
    if plan.kind == "number":
        return f"({ref})::text", lambda b: number_token(b) if b else None
    if plan.kind == "jsonb":
        return f"to_json({ref})", lambda b: msgspec.Raw(b) if b else None
    return f"to_json({ref})", lambda b: _JSON_DECODE(b) if b else None


def _projected_copy(table: Table, plans: list[_ColumnPlan], projection: Projection,
                    from_: str) -> tuple[str, Any]:
    """The COPY statement for ``projection``, and the per-row splice function, from one CSV
    row without its newline to one JSON line (None when the server's rows are final)."""
    cols = table.columns
    if not any(c.transform for c in projection.columns):
        sel = ", ".join(
            f"{_literal(c.constant) if c.source is None else plans[c.source].server_expr} AS {_quote(c.name)}"
            for c in projection.columns)
        return f"COPY (SELECT row_to_json(r.*) FROM (SELECT {sel} FROM {from_}) r) {_COPY_OPTIONS}", None

    inner = ", ".join(f"{plans[i].server_expr} AS {_quote(cols[i].name)}" for i in projection.reads)
    fields: list[str] = []
    laterals: list[str] = []
    segment: list[str] = []
    ops: list[Any] = []

    def close_segment() -> None:
        if segment:
            alias = f"s{len(laterals)}"
            laterals.append(f"CROSS JOIN LATERAL (SELECT {', '.join(segment)}) {alias}")
            f = len(fields)
            fields.append(f"row_to_json({alias}.*)")
            ops.append(lambda parts: parts[f][1:-1])
            segment.clear()

    owner_fields: dict[int, tuple[int, Any]] = {}

    def value_field(i: int) -> tuple[int, Any]:
        sql_, decode = _field(plans[i], f"r.{_quote(cols[i].name)}")
        fields.append(sql_)
        return len(fields) - 1, decode

    for c in projection.columns:
        if c.transform is None:
            ref = _literal(c.constant) if c.source is None else f"r.{_quote(cols[c.source].name)}"
            segment.append(f"{ref} AS {_quote(c.name)}")
            continue
        close_segment()
        assert c.source is not None
        f, decode = value_field(c.source)
        key = ENCODER.encode(c.name) + b":"
        fn = c.transform
        if c.owner is None:
            ops.append(lambda parts, f=f, d=decode, k=key, fn=fn: k + ENCODER.encode(fn(d(parts[f]))))
        else:
            if c.owner not in owner_fields:
                owner_fields[c.owner] = (-1, None)  # filled after the row's own fields
            ops.append((f, decode, key, fn, c.owner))
    close_segment()
    for owner in owner_fields:
        owner_fields[owner] = value_field(owner)
    # Owner-dependent ops could only be built once the owners' fields were numbered.
    for n, op in enumerate(ops):
        if isinstance(op, tuple):
            f, decode, key, fn, owner = op
            of, od = owner_fields[owner]
            ops[n] = (lambda parts, f=f, d=decode, k=key, fn=fn, of=of, od=od:
                      k + ENCODER.encode(fn(d(parts[f]), od(parts[of]))))

    sql_ = (f"COPY (SELECT {', '.join(fields)} FROM (SELECT {inner} FROM {from_}) r "
            f"{' '.join(laterals)}) {_COPY_OPTIONS}")

    def splice(line: bytes) -> bytes:
        # One row, without its newline; JSON escapes control characters, so \x02 only ever
        # separates fields and no field is ever quoted.
        parts = line.split(b"\x02")
        return b"{" + b",".join([op(parts) for op in ops]) + b"}\n"

    return sql_, splice
