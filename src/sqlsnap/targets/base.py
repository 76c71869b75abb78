"""The :class:`Target` interface: one open write connection to a database of one dialect.

A target creates tables from :mod:`sqlsnap.model` dataclasses, fills them by the dialect's
fastest bulk path and adds foreign keys after the data. The demo builds its sample database
through it, and ``sqlsnap restore`` is to load snapshots through it.

* **Names.** ``Table.name`` and ``ForeignKey.ref_table`` are written as bare table names in
  the connection's current schema (PostgreSQL) or database (MySQL); ``Table.schema`` and
  ``relname`` are not used. ``Column.type`` is the target dialect's type text (see
  :mod:`sqlsnap.targets.kinds`), ``Column.encoding`` is not used.
* **Transactions are the caller's.** Nothing commits implicitly, except where the dialect
  does: MySQL commits around every CREATE, DROP and ALTER, and SQLite runs DDL outside a
  transaction when none is open. :meth:`Target.close` of a connection the target opened
  discards what was not committed.
* **Errors.** Every driver error met inside a target's methods is translated by the
  dialect's one ``translate_error`` (PostgreSQL's, MySQL's, SQLite's) into a
  :class:`~sqlsnap.errors.SnapError` with a one-line message that names the fix, and never a
  password (only masked URLs are shown).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from types import TracebackType
from typing import Any, ClassVar

from ..errors import NotFoundError, OutputError, ServerUnreachable, SnapError
from ..model import ForeignKey, Table
from ..urls import SourceURL, mask

__all__ = ["BATCH_ROWS", "Target", "insert_batches", "row_adapter", "write_error"]

#: Rows per ``executemany`` call for MySQL and SQLite: large enough to amortise round trips,
#: small enough that a batch of the demo's AI logs (~3 KB each) stays a few MB.
BATCH_ROWS = 2000

Row = Sequence[Any]


class Target(ABC):
    """One open write connection to a database of one dialect; a context manager that
    closes it on exit (discarding what was not committed)."""

    #: The dialect, as in :data:`sqlsnap.urls.SCHEMES`.
    dialect: ClassVar[str]
    #: True where adding the foreign keys after the data is the fast path, so a loader should
    #: create tables without them and call :meth:`add_foreign_keys` once the rows are in.
    keys_after_load: ClassVar[bool] = False
    #: Appended to every CREATE TABLE (MySQL's engine and character set).
    table_options: ClassVar[str] = ""
    #: The driver's exception classes, translated at :meth:`_boundary`.
    driver_errors: tuple[type[Exception], ...]

    def __init__(self, connection: Any, *, where: str, owned: bool = True) -> None:
        #: The DB-API connection, for what the interface does not cover.
        self.connection = connection
        #: How the database is shown in messages: a masked URL, or a description.
        self.where = where
        self._owned = owned
        self._closed = False
        #: The schema or database that foreign keys name their parents in (None: the
        #: current one): a restore with jobs creates its tables in a staging database whose
        #: keys must point where the tables end up.
        self.references_in: str | None = None

    # -- opening --------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def open(cls, url: SourceURL, *, create: bool = True) -> Target:
        """Connect to ``url``, first creating its database when it is missing and ``create``."""

    @classmethod
    def attach(cls, connection: Any, *, where: str | None = None) -> Target:
        """A target over a connection the caller opened and keeps: :meth:`close` leaves it open."""
        return cls(connection, where=where or cls.describe(connection), owned=False)

    @classmethod
    def describe(cls, connection: Any) -> str:
        """How an attached connection is shown in messages."""
        return f"the {cls.dialect} database"

    # -- SQL text (no I/O) ------------------------------------------------------------------

    @staticmethod
    @abstractmethod
    def quote(name: str) -> str:
        """``name`` as a quoted identifier of the dialect."""

    def _names(self, names: Iterable[str]) -> str:
        return ", ".join(map(self.quote, names))

    def foreign_key_sql(self, fk: ForeignKey) -> str:
        """A FOREIGN KEY clause, usable in CREATE TABLE and in ALTER TABLE ... ADD; the
        referenced table in :attr:`references_in` when that is set."""
        parent = self.quote(fk.ref_table)
        if self.references_in:
            parent = f"{self.quote(self.references_in)}.{parent}"
        return (f"FOREIGN KEY ({self._names(fk.columns)}) "
                f"REFERENCES {parent} ({self._names(fk.ref_columns)})")

    def create_sql(
        self,
        table: Table,
        *,
        with_foreign_keys: bool = False,
        unique: Sequence[Sequence[str]] = (),
        checks: Sequence[str] = (),
    ) -> str:
        """The CREATE TABLE statement :meth:`create_table` runs."""
        lines = [f"{self.quote(c.name)} {c.type}{'' if c.nullable else ' NOT NULL'}" for c in table.columns]
        if table.primary_key:
            lines.append(f"PRIMARY KEY ({self._names(table.primary_key)})")
        lines += [f"UNIQUE ({self._names(columns)})" for columns in unique]
        lines += [f"CHECK ({check})" for check in checks]
        if with_foreign_keys:
            lines += [self.foreign_key_sql(fk) for fk in table.foreign_keys]
        body = ",\n  ".join(lines)
        return f"CREATE TABLE {self.quote(table.name)} (\n  {body}\n){self.table_options}"

    # -- operations, each inside the dialect's one error boundary -----------------------------

    def create_table(
        self,
        table: Table,
        *,
        with_foreign_keys: bool = False,
        unique: Sequence[Sequence[str]] = (),
        checks: Sequence[str] = (),
    ) -> None:
        """Create ``table`` with its primary key; its foreign keys too when
        ``with_foreign_keys``. ``unique`` lists column groups to keep unique and ``checks``
        CHECK expressions in the dialect's SQL (the model has no place for either yet)."""
        sql = self.create_sql(table, with_foreign_keys=with_foreign_keys, unique=unique, checks=checks)
        with self._boundary(f"creating table {table.name}", table.name):
            self._execute(sql)

    def drop_table(self, name: str) -> None:
        """Drop table ``name`` if it exists (tables referencing it must be dropped first)."""
        with self._boundary(f"dropping table {name}", name):
            self._execute(f"DROP TABLE IF EXISTS {self.quote(name)}")

    def load(self, table: Table, rows: Iterator[Row]) -> int:
        """Insert ``rows`` (values in ``table.columns`` order) by the dialect's bulk path;
        return how many. Not committed: a failure leaves the transaction for
        :meth:`rollback`."""
        with self._boundary(f"loading table {table.name}", table.name):
            return self._load(table, rows)

    def add_foreign_keys(self, table: Table) -> None:
        """Add ``table``'s foreign keys, checking the rows already loaded against them."""
        if not table.foreign_keys:
            return
        with self._boundary(f"adding the foreign keys of {table.name}", table.name):
            self._add_foreign_keys(table)

    def table_names(self) -> list[str]:
        """The tables that exist (in the current schema or database), sorted: a restore can
        refuse a target that is not empty."""
        with self._boundary("listing the tables"):
            return sorted(self._table_names())

    def execute(self, sql: str, args: Sequence[Any] | None = None, *, action: str = "running a statement",
                table: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement of the dialect's SQL inside the error boundary; its rows."""
        with self._boundary(action, table):
            return self._execute(sql, args)

    def commit(self) -> None:
        with self._boundary("committing"):
            self.connection.commit()

    def rollback(self) -> None:
        with self._boundary("rolling back"):
            self.connection.rollback()

    def close(self) -> None:
        """Close the connection if the target opened it; what was not committed is discarded
        (every driver rolls back on close). An attached connection is left open."""
        if self._closed:
            return
        self._closed = True
        if self._owned:
            try:
                self.connection.close()
            except self.driver_errors:
                pass  # a connection already broken: the error that broke it is the one to report

    def __enter__(self) -> Target:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- what each dialect provides -------------------------------------------------------------

    @abstractmethod
    def _load(self, table: Table, rows: Iterator[Row]) -> int: ...

    @abstractmethod
    def _add_foreign_keys(self, table: Table) -> None: ...

    @abstractmethod
    def _table_names(self) -> list[str]: ...

    @abstractmethod
    def translate_error(self, exc: Exception, action: str, table: str | None = None) -> SnapError:
        """The dialect's one translation of a driver error met while ``action``."""

    # -- helpers --------------------------------------------------------------------------------

    @contextmanager
    def _boundary(self, action: str, table: str | None = None) -> Iterator[None]:
        try:
            yield
        except self.driver_errors as exc:
            raise self.translate_error(exc, action, table) from exc

    def _execute(self, sql: str, args: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement; its rows, if it returns any."""
        cur = self.connection.cursor()
        try:
            if args is None:
                cur.execute(sql)
            else:
                cur.execute(sql, args)
            return [tuple(row) for row in cur.fetchall()] if cur.description else []
        finally:
            cur.close()


# -- errors -------------------------------------------------------------------------------------

#: What went wrong -> (error class, the fix to name).
_PROBLEMS: dict[str, tuple[type[SnapError], str]] = {
    "constraint": (SnapError, "the rows break a constraint of the table; fix them, or load into empty "
                              "tables with the foreign keys added after the data"),
    "data": (SnapError, "a value does not fit its column's type; check the column types"),
    "exists": (SnapError, "use an empty database, or drop the table first"),
    "permission": (OutputError, "grant the user the right to create tables and insert rows there, "
                                "or choose another database"),
    "full": (OutputError, "free some space on the database's disk, or choose another database"),
    # Transient: the server restarting or a network blip; the caller may retry the whole load.
    "connection": (ServerUnreachable, "the connection was lost; check that the server is up and try again"),
    "other": (SnapError, ""),
}


def file_database(url: SourceURL, kind: str, *, create: bool) -> str:
    """The path of a file database (SQLite, DuckDB) about to be opened: its folder must exist,
    and without ``create`` the file too. ``kind`` names it in messages."""
    path = url.database
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"folder {folder} does not exist; create it or choose another "
                          f"{url.raw.split('://', 1)[0]}:/// path", path=path)
    if not create and not os.path.exists(path):
        raise NotFoundError(f"{kind} file {path} does not exist; check the path in {url.display}", path=path)
    return path


def first_line(exc: BaseException) -> str:
    """The first line of a driver's message, masked (a message may quote a URL)."""
    text = str(exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[0], int) else exc).strip()
    return mask(text.splitlines()[0] if text else type(exc).__name__)


def write_error(problem: str, detail: str, *, action: str, where: str, table: str | None = None) -> SnapError:
    """A one-line error for ``problem`` (a key of :data:`_PROBLEMS`) met while ``action``."""
    cls, fix = _PROBLEMS[problem]
    fields: dict[str, object] = {"where": where}
    if table is not None:
        fields["table"] = table
    return cls(f"{action} in {where} failed: {detail}" + (f"; {fix}" if fix else ""), **fields)


# -- loading helpers shared by the executemany dialects -------------------------------------------


def row_adapter(converters: Sequence[Callable[[Any], Any] | None]) -> Callable[[Row], Row] | None:
    """A function converting the values a driver cannot take as they are, by column (``None``:
    as is); ``None`` when no column needs it, so rows then pass untouched. NULLs stay NULL."""
    plan = [(i, convert) for i, convert in enumerate(converters) if convert is not None]
    if not plan:
        return None

    def adapt(row: Row) -> Row:
        out = list(row)
        for i, convert in plan:
            if out[i] is not None:
                out[i] = convert(out[i])
        return tuple(out)

    return adapt


def insert_batches(connection: Any, sql: str, rows: Iterator[Row], adapt: Callable[[Row], Row] | None) -> int:
    """``executemany(sql)`` in batches of :data:`BATCH_ROWS`, in the open transaction."""
    source: Iterator[Row] = map(adapt, rows) if adapt else rows
    n = 0
    cur = connection.cursor()
    try:
        while batch := list(islice(source, BATCH_ROWS)):
            cur.executemany(sql, batch)
            n += len(batch)
    finally:
        cur.close()
    return n
