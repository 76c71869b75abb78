"""MySQL and MariaDB source: mysqlclient when installed (2-3.5x faster than PyMySQL
here on 1M rows), PyMySQL otherwise.

Snapshot: one connection, ``REPEATABLE READ`` and ``START TRANSACTION WITH CONSISTENT
SNAPSHOT, READ ONLY``. MySQL has no way to share that snapshot with a second connection,
so tables are read one after another on it (``max_readers = 1``), each with an unbuffered
(server-side) cursor that is read to the end before the next query.

Values arrive as the server's text (both drivers are given no decoders), so decimals,
floats and dates are written exactly as stored, zero dates included.
"""

from __future__ import annotations

import getpass
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec

from ..errors import AuthenticationError, NotFoundError, ServerUnreachable, SnapError, SourceBusy, UsageError
from ..model import Column, ForeignKey, Table
from ..plan.request import ReadRequest
from ..plan.segment import BUCKETS, Closure
from ..urls import mask
from ..values import b64, identity, json_document, nullable, number_token, text
from . import missing_driver
from .base import (
    Cancelled,
    SegmentSQL,
    Source,
    TableReader,
    bind,
    chunked_rows,
    render_filter,
    render_segment,
    render_segment_counts,
)

_INT = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"}
_NUMBER = {"decimal", "numeric", "float", "double", "real", "double precision"}
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
_SPATIAL = {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
            "multipolygon", "geometrycollection", "geomcollection"}
#: MariaDB's JSON type is LONGTEXT plus exactly this check. Only the whole clause counts: a
#: check such as "json_valid(`c`) or `c` = ''" lets the column hold text that is not JSON.
_JSON_CHECK = re.compile(r"\s*json_valid\(`((?:[^`]|``)+)`\)\s*", re.IGNORECASE)


def _driver() -> Any:
    try:
        import MySQLdb

        return MySQLdb
    except ImportError:
        pass
    try:
        import pymysql
    except ImportError as exc:
        raise missing_driver("mysql", exc) from None
    return pymysql


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else bytes(value).decode("utf-8")


def _datetime(value: Any) -> str:
    return text(value).replace(" ", "T", 1)


def _timestamp(value: Any) -> str:
    # The session's time_zone is UTC, so TIMESTAMP values are UTC instants.
    s = text(value).replace(" ", "T", 1)
    return s if s.startswith("0000-00-00") else s + "Z"


def _bits(width: int) -> Any:
    def convert(value: Any) -> str:
        return format(int.from_bytes(bytes(value), "big"), f"0{width}b")

    return convert


def _checked_json(value: Any) -> Any:
    # MariaDB skips CHECK constraints under check_constraint_checks=0 (bulk loads), so its JSON
    # columns may hold text that is not JSON: written as the string it is, as in SQLite.
    try:
        return json_document(value)
    except msgspec.DecodeError:
        return _str(value)


def _column_converter(data_type: str, column_type: str, is_json: bool) -> tuple[Any, str | None]:
    """The converter for a column and its metadata encoding."""
    if data_type == "json":
        return json_document, None
    if is_json:
        return _checked_json, None
    if data_type in _INT:
        return int, None
    if data_type in _NUMBER:
        return number_token, None
    if data_type in _BINARY:
        return b64, "base64"
    if data_type == "bit":
        m = re.search(r"\((\d+)\)", column_type)
        return _bits(int(m.group(1)) if m else 1), None
    if data_type == "datetime":
        return _datetime, None
    if data_type == "timestamp":
        return _timestamp, None
    if data_type in ("date", "time"):
        return text, None
    return _str, None


def _lock_wait_seconds(timeout: float) -> int:
    """lock_wait_timeout takes whole seconds, at least 1; 0 (wait for ever) is its maximum."""
    return max(1, round(timeout)) if timeout else 31536000


#: Error codes of a connection that is gone: 2006 server has gone away, 2013 lost connection,
#: 2055 lost connection (system error), 1927 connection killed, 1053 server shutdown, 4031
#: disconnected for inactivity.
_GONE = {2006, 2013, 2055, 1927, 1053, 4031}
#: 1205 lock wait timeout, 1969 max_statement_time (MariaDB), 3024 max_execution_time (MySQL).
_TIMEOUTS = {1205, 1969, 3024}


class MySQLSource(Source):
    dialect = "mysql"
    max_readers = 1

    def __init__(self, url: Any) -> None:
        self.driver = _driver()
        super().__init__(url)
        self._conn: Any = None
        self._version = ""
        #: Seconds a metadata lock may be awaited (0: the server's maximum, a year); the
        #: exporter sets --lock-timeout here.
        self.lock_timeout = 60.0

    def connect_args(self) -> dict[str, Any]:
        """The driver's ``connect()`` arguments for this URL (the targets reuse them, without
        ``conv``, to write)."""
        u = self.url
        if not u.database:
            raise UsageError("the MySQL URL names no database; use mysql://user@host:3306/dbname")
        args: dict[str, Any] = {
            "user": u.user or getpass.getuser(),
            "database": u.database,
            "charset": "utf8mb4",
            "connect_timeout": int(u.params.get("connect_timeout", 10)),
        }
        password = u.password if u.password is not None else os.environ.get("MYSQL_PWD")
        if password is not None:
            args["password"] = password
        socket = u.params.get("unix_socket") or u.params.get("socket")
        if socket:
            args["unix_socket"] = socket
        else:
            args["host"] = u.host or "localhost"
            if u.port:
                args["port"] = u.port
        if self.driver.__name__ == "MySQLdb":
            args["conv"] = {}  # no decoders: every value arrives as the server's text
        else:
            from pymysql.converters import encoders

            args["conv"] = dict(encoders)  # encoders only; no decoders
        return args

    def open(self) -> None:
        try:
            self._conn = self.driver.connect(**self.connect_args())
        except self.driver.Error as exc:
            raise self.translate_error(exc) from None
        try:
            cur = self._conn.cursor()
            cur.execute("SELECT VERSION()")
            self._version = text(cur.fetchone()[0])
            for stmt in (
                "SET SESSION time_zone = '+00:00'",
                # A slow consumer must not make the server drop a streaming result.
                "SET SESSION net_write_timeout = 3600",
                # Another session's ALTER or TRUNCATE holds the table's metadata lock: fail
                # after --lock-timeout rather than wait a year (the server's default).
                f"SET SESSION lock_wait_timeout = {_lock_wait_seconds(self.lock_timeout)}",
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            ):
                cur.execute(stmt)
            cur.close()
        except self.driver.Error as exc:
            raise self.runtime_error(exc, "starting the snapshot") from None

    def runtime_error(self, exc: Exception, doing: str, **fields: Any) -> SnapError:
        """A driver error met after connecting (counting, reading), as a one-line SnapError
        of the documented class that names the fix (docs/reliability.md)."""
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        msg = mask(" ".join(str(exc.args[1] if len(exc.args) > 1 else exc).split()))
        if code in _GONE:
            return ServerUnreachable(f"{doing}: the server closed the connection ({msg}); it was restarted, "
                                     "shut down or the session was killed: try again", **fields)
        if code in _TIMEOUTS:
            return SourceBusy(f"{doing}: the server gave up waiting ({msg}); another session holds a lock "
                              "(ALTER, TRUNCATE) or a statement time limit applies: try again later, or "
                              "raise --lock-timeout", **fields)
        if code == 1412:  # ER_TABLE_DEF_CHANGED: a TRUNCATE or ALTER after the snapshot began
            return SourceBusy(f"{doing}: the table was truncated or altered after the export's snapshot "
                              "began, so the snapshot cannot read it; try again", **fields)
        return SnapError(f"{doing} failed: {msg}", **fields)

    def translate_error(self, exc: Exception) -> SnapError:
        """A driver error met while connecting, as a one-line SnapError naming the fix."""
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        msg = mask(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
        where = self.url.display
        if code == 1049:
            return NotFoundError(f"{msg} (check the database name in {where})")
        if code in (1045, 1698):
            return AuthenticationError(f"{msg}; check the user and password (URL or MYSQL_PWD) for {where}")
        return ServerUnreachable(f"cannot connect to {where}: {msg}; is the server running and reachable?")

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing after a failure; nothing more to do
                pass
            self._conn = None

    def info(self) -> dict[str, Any]:
        return {
            "dialect": "mariadb" if "mariadb" in self._version.lower() else "mysql",
            "server_version": self._version.split("-")[0],
            "database": self.url.database,
            "host": self.url.host or "localhost",
            "user": self.url.user or getpass.getuser(),
        }

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._conn.cursor()
        try:
            cur.execute(sql, args)
            return [tuple(_str(v) if isinstance(v, bytes | bytearray) else v for v in row)
                    for row in cur.fetchall()]
        finally:
            cur.close()

    def list_tables(self, schemas: Sequence[str] | None) -> list[Table]:
        db = self.url.database
        if schemas:
            raise UsageError("--schema applies to PostgreSQL; a MySQL URL names its database")
        tables: dict[str, Table] = {}
        for name, est in self._query(
            "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
            (db,),
        ):
            tables[name] = Table(name, db, name, [], estimated_rows=None if est is None else int(est))
            self.details[name] = {"converters": [], "exprs": []}
        json_columns: set[tuple[str, str]] = set()
        try:
            for table, clause in self._query(
                "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = %s",
                (db,),
            ):
                m = _JSON_CHECK.fullmatch(clause or "")
                if m:
                    json_columns.add((table, m.group(1).replace("``", "`")))
        except self.driver.Error:  # MySQL before 8.0.16 has no CHECK_CONSTRAINTS; JSON is a type there
            pass
        for table, col, data_type, column_type, is_nullable in self._query(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
            "ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (db,),
        ):
            t = tables.get(table)
            if t is None:
                continue  # a view
            data_type = data_type.lower()
            conv, encoding = _column_converter(data_type, column_type, (table, col) in json_columns)
            expr = f"ST_AsText({_quote(col)})" if data_type in _SPATIAL else _quote(col)
            t.columns.append(Column(col, column_type, is_nullable == "YES", encoding))
            self.details[table]["converters"].append(nullable(conv) if conv is not identity else conv)
            self.details[table]["exprs"].append(expr)
        fks_of: dict[str, dict[tuple[str, str], tuple[list[str], list[str]]]] = {}
        for table, constraint, col, ref_table, ref_col in self._query(
            "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, "
            "k.REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE k "
            "WHERE k.TABLE_SCHEMA = %s AND (k.CONSTRAINT_NAME = 'PRIMARY' OR "
            "(k.REFERENCED_TABLE_NAME IS NOT NULL AND k.REFERENCED_TABLE_SCHEMA = k.TABLE_SCHEMA)) "
            "ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
            (db,),
        ):
            t = tables.get(table)
            if t is None:
                continue
            if constraint == "PRIMARY" and ref_table is None:
                t.primary_key.append(col)
                continue
            cols, refs = fks_of.setdefault(table, {}).setdefault((constraint, ref_table), ([], []))
            cols.append(col)
            refs.append(ref_col)
        for t in tables.values():
            for (_, ref_table), (cols, refs) in fks_of.get(t.name, {}).items():
                t.foreign_keys.append(ForeignKey(tuple(cols), ref_table, tuple(refs)))
        return list(tables.values())

    @contextmanager
    def reader(self) -> Iterator[TableReader]:
        yield _MySQLReader(self)


def _table_name(table: Table) -> str:
    return f"{_quote(table.schema)}.{_quote(table.relname)}"


def _key_chars(column_type: str) -> int:
    """How many characters a key value of this type takes as text (see _MySQLSegment)."""
    t = column_type.lower()
    kind = t.split("(")[0].split()[0]
    size = re.search(r"\((\d+)(?:,\s*(\d+))?\)", t)
    if kind in _INT:
        return 20
    if kind in ("decimal", "numeric") and size:
        return int(size.group(1)) + 2
    if kind in ("char", "varchar", "binary", "varbinary") and size:
        return int(size.group(1))
    if kind in ("date", "time", "datetime", "timestamp"):
        return 26
    return 255


class _MySQLSegment(SegmentSQL):
    """MariaDB types the columns of a recursive query by its first select and cuts longer
    values to fit, so every key is cast to one width: that of the widest key column of the
    closure. Narrow matters: the hash join of each step compares these strings, and 512
    characters instead of 40 doubled the time of a step on the demo (0.75 s to 1.35 s)."""

    null_safe_eq = "<=>"
    step_form = "pairs"

    def __init__(self, quote: Any, table_name: Any, closure: Closure) -> None:
        super().__init__(quote, table_name)
        by_name = {t.name: {c.name: c for c in t.columns} for t in closure.tables}
        self.chars = max([_key_chars(by_name[t.name][c].type)
                          for t, key in zip(closure.tables, closure.keys) for c in key] or [20])

    def to_key(self, expr: str, column: Column) -> str:
        return f"CAST({expr} AS CHAR({self.chars}))"

    def null_key(self) -> str:
        return f"CAST(NULL AS CHAR({self.chars}))"

    def json_text(self, expr: str, path: str) -> str:
        return f"CAST(JSON_UNQUOTE(JSON_EXTRACT({expr}, '{path}')) AS CHAR({self.chars}))"

    def bucket(self, seed: str, keys: Sequence[str]) -> str:
        # MOD, not %: the driver formats the statement with %s placeholders.
        return f"MOD(CRC32(CONCAT_WS(',', {seed}, {', '.join(keys)})), {BUCKETS})"

    def from_key(self, expr: str, column: Column) -> str:
        # Integers back to integers: an integer column compared with text is compared as a
        # double, exact only up to 2**53.
        kind = column.type.lower().split("(")[0].split()[0]
        if kind in _INT - {"year"}:
            return f"CAST({expr} AS {'UNSIGNED' if 'unsigned' in column.type.lower() else 'SIGNED'})"
        return expr


class _MySQLReader(TableReader):
    def __init__(self, source: MySQLSource) -> None:
        self.source = source

    @staticmethod
    def _from(request: ReadRequest) -> tuple[str, list[Any]]:
        params: list[Any] = []
        table = request.table
        sql = f"{_quote(table.schema)}.{_quote(table.relname)}"
        where = []
        if request.row_filter is not None:
            where.append(render_filter(request.row_filter, _quote, bind(params, "%s")))
        if request.segment is not None:
            segment_sql = _MySQLSegment(_quote, _table_name, request.segment.closure)
            where.append(render_segment(request.segment, segment_sql, bind(params, "%s")))
        if where:
            sql += " WHERE " + " AND ".join(where)
        return sql, params

    def segment_counts(self, closure: Closure) -> dict[int, tuple[int, int]] | None:
        params: list[Any] = []
        segment_sql = _MySQLSegment(_quote, _table_name, closure)
        query = render_segment_counts(closure, segment_sql, bind(params, "%s"))
        try:
            with self.source._conn.cursor() as cur:
                cur.execute(query, params or None)
                return {int(t): (int(n), int(p)) for t, n, p in cur.fetchall()}
        except self.source.driver.Error as exc:
            raise self.source.runtime_error(exc, "counting the segment's rows") from None

    def count(self, request: ReadRequest) -> int:
        driver = self.source.driver
        table = request.table
        try:
            with self.source._conn.cursor() as cur:
                from_, params = self._from(request)
                cur.execute(f"SELECT count(*) FROM {from_}", params or None)
                return int(cur.fetchone()[0])
        except driver.Error as exc:
            raise self.source.runtime_error(exc, f"counting the rows of table {table.name}",
                                            table=table.name) from None

    def read(self, request: ReadRequest, cancel: threading.Event) -> Iterator[tuple[bytes, int]]:
        table, projection = request.table, request.projection
        src = self.source
        driver = src.driver
        cursor_class = driver.cursors.SSCursor
        cur = src._conn.cursor(cursor_class)
        details = src.details[table.name]
        all_exprs = details["exprs"]
        read = all_exprs if projection is None else [all_exprs[i] for i in projection.reads]
        exprs = ", ".join(read) or "NULL"
        names = [c.name for c in table.columns]
        try:
            from_, params = self._from(request)
            cur.execute(f"SELECT {exprs} FROM {from_}", params or None)

            yield from chunked_rows(cur.fetchmany, names, details["converters"], cancel, projection)
        except driver.Error as exc:
            if cancel.is_set():
                raise Cancelled from None
            raise src.runtime_error(exc, f"reading table {table.name}", table=table.name) from None
        finally:
            try:
                cur.close()  # drains an unread streaming result so the connection stays usable
            except Exception:  # noqa: BLE001 - a dead connection fails in the driver's own ways
                pass
