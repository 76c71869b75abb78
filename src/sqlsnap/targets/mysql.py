"""MySQL and MariaDB target (mysqlclient or PyMySQL, whichever the source would use): rows by
multi-row INSERT batches, foreign keys with the tables."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ..errors import OutputError, SnapError
from ..model import Column, Table
from ..urls import SourceURL
from .base import Row, Target, first_line, insert_batches, row_adapter, write_error

#: Server error codes -> what went wrong (client codes 2006/2013: the server went away).
_PROBLEMS = {
    **dict.fromkeys((1048, 1062, 1169, 1216, 1217, 1364, 1451, 1452, 3819, 4025), "constraint"),
    **dict.fromkeys((1264, 1265, 1292, 1366, 1406, 1411), "data"),
    1050: "exists",
    **dict.fromkeys((1044, 1142, 1227), "permission"),
    **dict.fromkeys((1021, 1114), "full"),
    **dict.fromkeys((0, 2003, 2006, 2013, 2055), "connection"),
}
#: ER_BAD_DB_ERROR, "Unknown database".
_UNKNOWN_DATABASE = 1049


def _code(exc: BaseException) -> int | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


def _translate(exc: Exception, *, action: str, where: str, table: str | None = None,
               source: Any = None) -> SnapError:
    """The one place where the MySQL drivers' errors become sqlsnap's."""
    if source is not None:  # connecting: the source knows the URL and the fixes
        return source.translate_error(exc)
    msg = first_line(exc)
    if action.startswith("creating database") and _code(exc) in (1044, 1227):  # access denied
        return OutputError(f"{action} in {where} failed: {msg}; create it first (CREATE DATABASE), "
                           "or connect as a user allowed to", where=where)
    code = _code(exc)
    problem = _PROBLEMS.get(code, "other") if code is not None else "other"
    return write_error(problem, msg, action=action, where=where, table=table)


def _utc_naive(value: Any) -> Any:
    """DATETIME and TIMESTAMP take no zone: aware values are written as UTC (for TIMESTAMP
    columns that needs the session's time zone to be UTC)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _converter(column: Column) -> Any:
    return _utc_naive if column.type.upper().startswith(("DATETIME", "TIMESTAMP")) else None


class MySQLTarget(Target):
    dialect = "mysql"
    #: Keys are created with the tables: adding one later makes InnoDB copy the whole table
    #: (with foreign_key_checks on), so it is kept for cycles (see :meth:`_add_foreign_keys`).
    keys_after_load = False
    #: utf8mb4 for every character, including emoji; InnoDB for transactions and foreign keys.
    table_options = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"

    def __init__(self, connection: Any, *, where: str, owned: bool = True) -> None:
        super().__init__(connection, where=where, owned=owned)
        # MySQLdb or pymysql, from the connection itself: attached connections may be either.
        driver = sys.modules[type(connection).__module__.partition(".")[0]]
        self.driver_errors = (driver.Error,)

    @classmethod
    def open(cls, url: SourceURL, *, create: bool = True) -> MySQLTarget:
        from ..sources.mysql import MySQLSource

        source = MySQLSource(url)  # MissingDriverError (exit 5) when neither driver is installed
        args = source.connect_args()
        args.pop("conv", None)  # the source reads text only; writing wants the drivers' encoders
        driver = source.driver
        where = url.display
        try:
            return cls(driver.connect(**args), where=where)
        except driver.Error as exc:
            if not (create and _code(exc) == _UNKNOWN_DATABASE):
                raise _translate(exc, action="connecting", where=where, source=source) from exc
        database = args.pop("database")
        try:
            admin = driver.connect(**args)
        except driver.Error as exc:
            raise _translate(exc, action="connecting", where=where, source=source) from exc
        try:
            cur = admin.cursor()
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {cls.quote(database)} CHARACTER SET utf8mb4")
            cur.close()
        except driver.Error as exc:
            raise _translate(exc, action=f"creating database {database}", where=where) from exc
        finally:
            admin.close()
        try:
            return cls(driver.connect(database=database, **args), where=where)
        except driver.Error as exc:
            raise _translate(exc, action="connecting", where=where, source=source) from exc

    @staticmethod
    def quote(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def translate_error(self, exc: Exception, action: str, table: str | None = None) -> SnapError:
        return _translate(exc, action=action, where=self.where, table=table)

    def _load(self, table: Table, rows: Iterator[Row]) -> int:
        """``executemany`` in batches, which both drivers rewrite into multi-row INSERTs.

        Measured on this machine with MariaDB: 146 k rows/s, against 273 k for
        ``LOAD DATA LOCAL INFILE`` from a named pipe, which needs ``local_infile`` enabled on
        both server and client; a restore should use it where it is allowed.
        """
        placeholders = ", ".join(["%s"] * len(table.columns))
        sql = (f"INSERT INTO {self.quote(table.name)} ({self._names(c.name for c in table.columns)}) "
               f"VALUES ({placeholders})")
        return insert_batches(self.connection, sql, rows, row_adapter([_converter(c) for c in table.columns]))

    def _add_foreign_keys(self, table: Table) -> None:
        # One ALTER for all of a table's keys: each ALTER copies the table once.
        adds = ", ".join(f"ADD {self.foreign_key_sql(fk)}" for fk in table.foreign_keys)
        self._execute(f"ALTER TABLE {self.quote(table.name)} {adds}")

    def _table_names(self) -> list[str]:
        rows = self._execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'"
        )
        return [name.decode() if isinstance(name, bytes) else name for (name,) in rows]
