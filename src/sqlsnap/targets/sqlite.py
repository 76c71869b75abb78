"""SQLite target (the standard library's sqlite3): rows by ``executemany`` in one transaction,
foreign keys declared with the tables and checked after the data."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from ..errors import SnapError
from ..model import Column, Table
from ..urls import SourceURL
from .base import Row, Target, file_database, first_line, insert_batches, row_adapter, write_error

#: SQLite result codes (``exc.sqlite_errorcode``, primary code in the low byte) -> what went wrong.
_PROBLEMS = {
    3: "permission",  # SQLITE_PERM
    8: "permission",  # SQLITE_READONLY
    13: "full",  # SQLITE_FULL
    14: "permission",  # SQLITE_CANTOPEN
    18: "data",  # SQLITE_TOOBIG
    19: "constraint",  # SQLITE_CONSTRAINT
    20: "data",  # SQLITE_MISMATCH
}
#: Declared types whose values may arrive as Python objects sqlite3 cannot bind: it has no
#: adapter for Decimal or time, and its date and datetime adapters are deprecated (3.12).
_CONVERTED_TYPES = re.compile(r"DATE|TIME|NUMERIC|DECIMAL|REAL|FLOA|DOUB", re.IGNORECASE)


def _translate(exc: Exception, *, action: str, where: str, table: str | None = None) -> SnapError:
    """The one place where sqlite3's errors become sqlsnap's."""
    msg = first_line(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.IntegrityError):
        problem = "constraint"
    elif "already exists" in msg:
        problem = "exists"
    else:
        problem = _PROBLEMS.get(code & 0xFF, "other") if code is not None else "other"
    return write_error(problem, msg, action=action, where=where, table=table)


def _value(value: Any) -> Any:
    """A value sqlite3 can bind: dates and times as ISO 8601 text (UTC written ``Z``), decimals
    as their digits (the column's affinity then stores a number)."""
    if isinstance(value, datetime):
        # Milliseconds when exact (as the demo's times are), else microseconds: never lossy.
        spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
        return value.isoformat(timespec=spec).replace("+00:00", "Z")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _converter(column: Column) -> Any:
    return _value if _CONVERTED_TYPES.search(column.type) else None


class SQLiteTarget(Target):
    """Foreign keys: SQLite cannot add one to an existing table (its ALTER TABLE has no ADD
    CONSTRAINT), so they are always declared with the table, whatever ``with_foreign_keys``
    says. That is safe: SQLite resolves a reference only when it checks a row, and checks rows
    only on connections with ``PRAGMA foreign_keys = ON`` (off by default, and left off by
    :meth:`open`), so tables may be created and loaded in any order, cycles included.
    :meth:`add_foreign_keys` then does what ADD FOREIGN KEY does elsewhere: it checks the
    loaded rows (``PRAGMA foreign_key_check``) and fails if any has no parent.
    """

    dialect = "sqlite"
    keys_after_load = False
    driver_errors = (sqlite3.Error,)

    @classmethod
    def open(cls, url: SourceURL, *, create: bool = True) -> SQLiteTarget:
        path = file_database(url, "SQLite", create=create)
        try:
            return cls(sqlite3.connect(path), where=url.display)
        except sqlite3.Error as exc:
            raise _translate(exc, action="opening the file", where=url.display) from exc

    @staticmethod
    def quote(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def create_sql(self, table: Table, *, with_foreign_keys: bool = False, unique: Any = (),
                   checks: Any = ()) -> str:
        return super().create_sql(table, with_foreign_keys=True, unique=unique, checks=checks)

    def translate_error(self, exc: Exception, action: str, table: str | None = None) -> SnapError:
        return _translate(exc, action=action, where=self.where, table=table)

    def _load(self, table: Table, rows: Iterator[Row]) -> int:
        """``executemany`` in batches, in the caller's one transaction (sqlite3 opens it before
        the first INSERT). Measured on this machine: 421 k rows/s with indexes created after
        the data, 144 k with them first; the demo creates its unique indexes with the tables,
        a restore should create them afterwards."""
        placeholders = ", ".join(["?"] * len(table.columns))
        sql = (f"INSERT INTO {self.quote(table.name)} ({self._names(c.name for c in table.columns)}) "
               f"VALUES ({placeholders})")
        return insert_batches(self.connection, sql, rows, row_adapter([_converter(c) for c in table.columns]))

    def _add_foreign_keys(self, table: Table) -> None:
        orphans = 0
        parents: set[str] = set()
        cur = self.connection.execute(f"PRAGMA foreign_key_check({self.quote(table.name)})")
        for _table, _rowid, parent, _fk in cur:
            orphans += 1
            parents.add(parent)
        if orphans:
            raise write_error(
                "constraint", f"{orphans} row(s) without a parent row in {', '.join(sorted(parents))}",
                action=f"adding the foreign keys of {table.name}", where=self.where, table=table.name,
            )

    def _table_names(self) -> list[str]:
        rows = self._execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
        return [name for (name,) in rows]
