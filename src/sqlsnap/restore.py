"""Loading a snapshot back into a database: :func:`restore`.

::

    result = sqlsnap.restore("app.json.zst", "postgresql://me@localhost/app_copy")
    result.tables        # {"companies": 3, "users": 30, ...}

The snapshot streams (:func:`sqlsnap.open_snapshot`: any layout, codec or store export
writes) table by table in file order, parents first; each table is created when its rows
arrive, loaded by the target's bulk path (:mod:`sqlsnap.targets`), and its foreign keys are
added once every table is in, so cycles load. Memory holds one batch of rows.

* **Types.** Same dialect: the recorded source types, primary and foreign keys. Another
  dialect: each source type through :func:`sqlsnap.targets.kinds.kind_of` (docs/restore.md).
* **Values** are decoded back to the source's values by the decoders of
  :mod:`sqlsnap.values` (exact digits, bytes, json text, arrays, SQLite markers).
* **All or nothing.** PostgreSQL and SQLite run the whole restore in one transaction (DDL
  included). MySQL commits around every CREATE and DROP: a failure rolls back the rows and
  drops the tables the restore created; ``replace=True`` there renames the old tables aside
  until the commit, and back on failure.
* **Provenance.** A ``_sqlsnap_restore`` table gets one row per restore: when, from which
  snapshot, exported when and from where, rows per table.
* **Jobs.** ``jobs`` > 1 on PostgreSQL and MySQL loads tables side by side, each on its own
  connection, into a staging schema or database moved into place at the end in one step
  (:class:`_Staged`, docs/restore.md).
"""

from __future__ import annotations

import fnmatch
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from .errors import NotFoundError, OutputError, SnapError, UsageError, VerifyError
from .model import Column, ForeignKey, Table, dependency_order
from .snapshot import open_snapshot
from .targets import Target, column_type, open_target
from .targets.kinds import kind_of
from .urls import mask
from .values import ENCODER, RAW_ROW, ROW, column_decoder, column_shape, value_decoder

__all__ = ["PROVENANCE_TABLE", "RestoreResult", "restore"]

#: The table that says which snapshot a restored database came from.
PROVENANCE_TABLE = "_sqlsnap_restore"
#: Rows looked at before creating a MariaDB/MySQL table, to tell a JSON column (MariaDB's
#: JSON is a LONGTEXT with a json_valid check, recorded as ``longtext``) by its first
#: non-null value. Bounded so that memory stays one batch (targets.base.BATCH_ROWS is 2000).
_PEEK_ROWS = 1000
_NULL = msgspec.Raw(b"null")


@dataclass
class RestoreResult:
    """What :func:`restore` did."""

    snapshot: str
    #: The target, masked.
    target: str
    #: Rows loaded per table, in load order.
    tables: dict[str, int] = field(default_factory=dict)
    #: Tables dropped and created again (``replace``) or added to (``append``).
    replaced: list[str] = field(default_factory=list)
    appended: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Tables loaded side by side: ``jobs`` on PostgreSQL and MySQL, else 1 (``restore``).
    jobs: int = 1

    @property
    def total_rows(self) -> int:
        return sum(self.tables.values())

    def summary(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "target": self.target, "tables": self.tables,
                "total_rows": self.total_rows, "replaced": self.replaced, "appended": self.appended,
                "jobs": self.jobs, "seconds": round(self.seconds, 3)}


def restore(
    snapshot: str,
    target_url: str,
    *,
    tables: Sequence[str] | None = None,
    exclude_tables: Sequence[str] | None = None,
    replace: bool = False,
    append: bool = False,
    identities: Sequence[Any] = (),
    s3_endpoint: str | None = None,
    progress: Callable[[str, int], None] | None = None,
    jobs: int = 1,
) -> RestoreResult:
    """Load ``snapshot`` into the database at ``target_url`` (created when missing).

    ``tables`` / ``exclude_tables``: globs of the tables to restore (default: all). A target
    that already holds any of them is refused (:class:`OutputError`) unless ``replace`` (drop
    and create them again) or ``append`` (add the rows to them). ``progress`` is called with
    ``(table, rows)`` after each table. ``jobs``: tables loaded side by side on PostgreSQL and
    MySQL (:class:`_Staged`); SQLite and DuckDB have one writer, and ``append`` adds to tables
    in one transaction, so those load with one. A failure leaves the target as it was (see the
    module docstring for MySQL)."""
    if replace and append:
        raise UsageError("--replace and --append exclude each other; choose one")
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    started = time.monotonic()
    if target_url.split("://", 1)[0].lower() == "duckdb":
        result = _restore_duckdb(snapshot, target_url, tables=tables, exclude_tables=exclude_tables,
                                 replace=replace, append=append, identities=identities,
                                 s3_endpoint=s3_endpoint, progress=progress)
        result.seconds = time.monotonic() - started
        return result
    with open_snapshot(snapshot, identities=identities, s3_endpoint=s3_endpoint) as snap:
        meta = snap.metadata
        names = list(meta.get("tables", {}))
        selected = _select(names, tables, exclude_tables)
        with open_target(target_url) as target:
            if jobs > 1 and target.dialect in ("postgresql", "mysql") and not append:
                job: _Restore = _Staged(snap, target, meta, selected, replace=replace, append=append,
                                        progress=progress, url=target_url, jobs=jobs)
            else:
                job = _Restore(snap, target, meta, selected, replace=replace, append=append,
                               progress=progress)
            job.result.snapshot = mask(snapshot)
            job.reopen = lambda: open_target(target_url, create=False)
            job.run()
    job.result.seconds = time.monotonic() - started
    return job.result


def _restore_duckdb(snapshot: str, target_url: str, *, tables: Sequence[str] | None,
                    exclude_tables: Sequence[str] | None, replace: bool, append: bool,
                    identities: Sequence[Any], s3_endpoint: str | None,
                    progress: Callable[[str, int], None] | None) -> RestoreResult:
    """A DuckDB file for analysis (docs/ai.md): the whole snapshot, with its metadata tables,
    through the AI hand-off's loader, which writes a new file and renames it into place when
    complete, so a failure leaves the target as it was, with ``replace`` too."""
    from .ai.load import load_snapshot
    from .urls import parse_url

    if tables or exclude_tables or append:
        raise UsageError("a restore into DuckDB loads the whole snapshot into a new file; --tables, "
                         "--exclude-tables and --append are for database servers")
    path = parse_url(target_url, target=True).database
    existed = os.path.exists(path)
    if existed and not replace:
        raise OutputError(f"{path} already exists; give --replace to replace it, or choose another file",
                          path=path)
    load_snapshot(snapshot, path, identities=identities, s3_endpoint=s3_endpoint, replace=replace)
    import duckdb

    result = RestoreResult(mask(snapshot), mask(target_url))
    with duckdb.connect(path, read_only=True) as conn:
        for name, rows in conn.execute("SELECT table_name, rows FROM _sqlsnap_tables ORDER BY position")\
                .fetchall():
            result.tables[name] = int(rows or 0)
            if progress:
                progress(name, result.tables[name])
    if existed:
        result.replaced = list(result.tables)
    return result


def _select(names: list[str], include: Sequence[str] | None, exclude: Sequence[str] | None) -> list[str]:
    if include:
        unmatched = [p for p in include if not fnmatch.filter(names, p)]
        if unmatched:
            raise NotFoundError(f"no table of the snapshot matches {', '.join(map(repr, unmatched))}; its "
                                f"tables are: {', '.join(names) or '(none)'}", table=unmatched[0])
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in include)]
    return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exclude or ())]


def _dialect(name: str) -> str:
    return "mysql" if name == "mariadb" else name


class _Restore:
    def __init__(self, snap: Any, target: Target, meta: dict[str, Any], selected: list[str], *,
                 replace: bool, append: bool, progress: Callable[[str, int], None] | None) -> None:
        self.snap = snap
        self.target = target
        self.meta = meta
        self.source = _dialect(str(meta.get("source", {}).get("dialect", "")))
        self.same = self.source == target.dialect
        self.selected = selected
        self.replace = replace
        self.append = append
        self.progress = progress
        self.result = RestoreResult(snapshot="", target=target.where)
        #: Tables this restore created (MySQL drops them again on failure), in creation order.
        self.created: list[Table] = []
        self.existing: set[str] = set()
        #: PostgreSQL type text -> itself when the target knows it, else "text".
        self.types: dict[str, str] = {}
        #: MySQL --replace: table -> the name its old version was renamed to until the commit.
        self.aside: dict[str, str] = {}
        #: Opens a new connection to the target, to clean up after a lost one.
        self.reopen: Callable[[], Target] | None = None

    # -- the run --------------------------------------------------------------------------------

    def _clashes(self) -> list[str]:
        """The selected tables the target already holds; refused without replace or append."""
        target = self.target
        self.existing = set(target.table_names())
        clash = [n for n in self.selected if n in self.existing]
        if clash and not (self.replace or self.append):
            shown = ", ".join(clash[:5]) + (f" and {len(clash) - 5} more" if len(clash) > 5 else "")
            raise OutputError(f"{target.where} already holds {len(clash)} table(s) of the snapshot "
                              f"({shown}); restore into an empty database, or pass --replace to drop "
                              "and recreate them or --append to add the rows", where=target.where)
        return clash

    def run(self) -> None:
        target = self.target
        clash = self._clashes()
        self._begin()
        try:
            if self.replace:
                if self.target.dialect == "mysql":
                    self._set_aside(clash)
                else:
                    self._drop(clash)
                self.existing -= set(clash)
                self.result.replaced = clash
            self.result.appended = clash if self.append else []
            if self.append and clash and self.target.dialect == "mysql":
                self._create_up_front()
            self._load_all()
            self._add_keys()
            self._record()
            self._finish()
            target.commit()
        except BaseException:
            self._undo()
            raise
        self._drop_aside()

    def _begin(self) -> None:
        if self.target.dialect == "sqlite":
            # sqlite3 opens a transaction only before INSERTs; DDL inside one needs BEGIN.
            self.target.execute("BEGIN", action="starting the transaction")
        else:
            _session(self.target)

    def _undo(self) -> None:
        try:
            self.target.rollback()
        except SnapError:
            pass  # a lost connection: the server rolls back what was not committed
        if self.target.dialect != "mysql" or not (self.created or self.aside):
            return
        # MySQL committed its DDL: drop what was created.
        _undo(self.target, self.reopen, self._drop_created)

    def _drop_created(self, target: Target) -> None:
        target.execute("SET SESSION foreign_key_checks = 0", action="setting the session")
        for table in reversed(self.created):
            target.drop_table(table.name)
        if self.aside:  # --replace: the old tables come back
            renames = ", ".join(f"{target.quote(old)} TO {target.quote(name)}"
                                for name, old in self.aside.items())
            target.execute(f"RENAME TABLE {renames}", action="putting the replaced tables back")
            self.aside = {}

    def _set_aside(self, names: list[str]) -> None:
        """MySQL cannot drop tables inside a transaction: ``--replace`` renames the old ones
        aside in one atomic RENAME TABLE (InnoDB renames their ``_ibfk_`` keys with them), and
        drops them only once the restore has committed; a failure renames them back."""
        suffix = os.urandom(4).hex()
        self.aside = {name: f"_sqlsnap_old_{suffix}_{i}" for i, name in enumerate(names)}
        renames = ", ".join(f"{self.target.quote(name)} TO {self.target.quote(old)}"
                            for name, old in self.aside.items())
        self.target.execute(f"RENAME TABLE {renames}", action="setting the replaced tables aside")

    def _drop_aside(self) -> None:
        if not self.aside:
            return
        try:
            self.target.execute("SET SESSION foreign_key_checks = 0", action="setting the session")
            for old in self.aside.values():
                self.target.drop_table(old)
            self.target.execute("SET SESSION foreign_key_checks = 1", action="setting the session")
        except SnapError as exc:
            left = ", ".join(self.aside.values())
            raise OutputError(f"the restore into {self.target.where} is done, but the tables it replaced "
                              f"could not be dropped ({exc}); drop {left} by hand",
                              where=self.target.where) from exc

    def _finish(self) -> None:
        if self.target.dialect == "mysql":
            self.target.execute("SET SESSION foreign_key_checks = 1", action="setting the session")

    def _drop(self, names: list[str]) -> None:
        if names and self.target.dialect == "postgresql":
            # One statement: tables in a cycle of keys can only be dropped together.
            listed = ", ".join(map(self.target.quote, names))
            self.target.execute(f"DROP TABLE {listed}", action=f"dropping tables {', '.join(names)}")
            return
        tables = [Table(n, "", n, [], foreign_keys=self._keys(n)) for n in names]
        for table in reversed(dependency_order(tables)):  # children first
            self.target.drop_table(table.name)

    # -- tables ---------------------------------------------------------------------------------

    def _keys(self, name: str) -> list[ForeignKey]:
        """The table's foreign keys whose parent is restored too, or already in the target."""
        keys = self.meta["tables"][name].get("foreign_keys") or []
        parents = set(self.selected) | self.existing
        return [ForeignKey(tuple(k["columns"]), k["references"]["table"], tuple(k["references"]["columns"]))
                for k in keys if k["references"]["table"] in parents]

    def _column_type(self, column: dict[str, Any], json_text: bool) -> str:
        source_type = str(column.get("type", ""))
        if self.same:
            if json_text:
                return "JSON"
            return self._known_type(source_type)
        if json_text:
            kind = "json"
        elif column.get("encoding") == "base64":
            kind = "bytes"
        else:
            # MySQL TIMESTAMP and SQLite DATETIME text are written in UTC with Z.
            zone = (self.source == "mysql" and source_type.lower().startswith("timestamp")) or \
                (self.source == "sqlite" and "DATETIME" in source_type.upper())
            kind = kind_of(source_type, timezone=zone)
        return column_type(kind, self.target.dialect)

    def _known_type(self, type_text: str) -> str:
        """A PostgreSQL type that does not exist in the target (an enum, a domain, an
        extension's type: the snapshot records only the name) becomes text."""
        if self.target.dialect != "postgresql" or not type_text:
            return type_text
        if type_text not in self.types:  # one round trip per type, not per column (29 vs 130 on the demo)
            found = self.target.execute("SELECT to_regtype(%s)", (type_text,), action="looking up a type")
            self.types[type_text] = type_text if found and found[0][0] is not None else "text"
        return self.types[type_text]

    def _model(self, name: str, json_columns: set[str]) -> Table:
        info = self.meta["tables"][name]
        columns = [Column(c["name"], self._column_type(c, c["name"] in json_columns),
                          bool(c.get("nullable", True))) for c in info["columns"]]
        keys = self._keys(name)
        if self.target.dialect == "sqlite":
            keys.reverse()  # SQLite lists a table's keys last declared first: keep the recorded order
        return Table(name, "", name, columns, primary_key=list(info.get("primary_key") or []),
                     foreign_keys=keys)

    def _load_all(self) -> None:
        wanted = set(self.selected)
        seen: set[str] = set()
        for name, rows in self.snap.tables(raw=True):
            if name not in wanted:
                continue
            seen.add(name)
            self._load(name, rows)
        for name in self.selected:  # listed in the metadata, absent from the data: still created
            if name not in seen:
                self._load(name, iter(()))

    def _load(self, name: str, rows: Iterator[bytes]) -> None:
        info = self.meta["tables"][name]
        columns = info["columns"]
        head: list[bytes] = []
        json_columns: set[str] = set()
        if self.source == "mysql":
            head, json_columns = _peek_json(rows, columns)
        table = self._model(name, json_columns)
        if name not in self.existing and all(t.name != name for t in self.created):
            self.target.create_table(table, with_foreign_keys=self.target.dialect == "mysql")
            self.created.append(table)
        convert = _row_converter(self.source, self.target.dialect, columns, table.columns, json_columns, name)
        stream = (convert(row) for source in (head, rows) for row in source)
        loaded = self.target.load(table, stream)
        self.result.tables[name] = loaded
        if self.progress:
            self.progress(name, loaded)

    def _create_up_front(self) -> None:
        """MySQL commits before every CREATE: appending to existing tables, create the missing
        ones (and the provenance table) before any row is added, so that a failure can roll
        the appended rows back. Their JSON columns are not told apart then (no rows yet)."""
        for name in self.selected:
            if name not in self.existing:
                table = self._model(name, set())
                self.target.create_table(table, with_foreign_keys=True)
                self.created.append(table)
        if PROVENANCE_TABLE not in self.existing:
            self.target.create_table(self._provenance_table())
            self.created.append(self._provenance_table())

    def _add_keys(self) -> None:
        for table in self.created:
            if self.target.dialect == "mysql":
                self._check_keys(table)
            elif self.target.dialect == "sqlite" or self.target.keys_after_load:
                self.target.add_foreign_keys(table)

    def _check_keys(self, table: Table, where: Callable[[str], str] | None = None) -> None:
        """MySQL with foreign_key_checks off accepted every row: find the first without its
        parent, as ADD FOREIGN KEY would. ``where`` gives a table's qualified name (staging)."""
        q = self.target.quote
        name: Callable[[str], str] = where or q
        for fk in table.foreign_keys:
            on = " AND ".join(f"p.{q(r)} = c.{q(c)}" for c, r in zip(fk.columns, fk.ref_columns, strict=True))
            present = " AND ".join(f"c.{q(c)} IS NOT NULL" for c in fk.columns)
            sql = (f"SELECT COUNT(*) FROM {name(table.name)} c LEFT JOIN {name(fk.ref_table)} p ON {on} "
                   f"WHERE {present} AND p.{q(fk.ref_columns[0])} IS NULL")
            action = f"checking the foreign keys of {table.name}"
            (count,), = self.target.execute(sql, action=action, table=table.name)
            if count:
                raise OutputError(f"{action} in {self.target.where} failed: {count} row(s) without a parent "
                                  f"row in {fk.ref_table}; restore {fk.ref_table} too, or fix the rows",
                                  where=self.target.where, table=table.name)

    def _provenance_table(self) -> Table:
        columns = [("restored_at", "text"), ("snapshot", "text"), ("exported_at", "text"),
                   ("source_dialect", "varchar:32"), ("source_database", "text"), ("generator", "text"),
                   ("tables", "longtext"), ("total_rows", "bigint")]
        return Table(PROVENANCE_TABLE, "", PROVENANCE_TABLE,
                     [Column(n, column_type(k, self.target.dialect), True) for n, k in columns])

    def _record(self) -> None:
        table = self._provenance_table()
        if PROVENANCE_TABLE not in self.existing and PROVENANCE_TABLE not in self.result.tables \
                and all(t.name != PROVENANCE_TABLE for t in self.created):
            self.target.create_table(table)
            self.created.append(table)
        source = self.meta.get("source", {})
        row = (datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), self.result.snapshot,
               self.meta.get("exported_at"), source.get("dialect"), source.get("database"),
               self.meta.get("generator"), ENCODER.encode(self.result.tables).decode(),
               self.result.total_rows)
        self.target.load(table, iter([row]))


def _session(target: Target) -> None:
    """The session a restore writes in, on each of its connections."""
    if target.dialect == "postgresql":
        # Zone-less times from other dialects (SQLite DATETIME text) are UTC.
        target.execute("SET TIME ZONE 'UTC'", action="setting the session")
    elif target.dialect == "mysql":
        # As mysqldump's files do: keys are declared with the tables and checked once the
        # rows are in (_check_keys); an explicit 0 in an AUTO_INCREMENT column stays 0;
        # TIMESTAMP values are UTC; strict, so a value that does not fit fails.
        target.execute("SET SESSION foreign_key_checks = 0, time_zone = '+00:00', "
                       "sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO'", action="setting the session")


def _peek_json(rows: Iterator[bytes], columns: list[dict[str, Any]]) -> tuple[list[bytes], set[str]]:
    """Up to :data:`_PEEK_ROWS` rows, and the LONGTEXT columns whose first non-null value is a
    JSON document rather than a string: MariaDB's JSON columns."""
    candidates = {c["name"] for c in columns if str(c.get("type", "")).lower() == "longtext"}
    if not candidates:
        return [], set()
    head: list[bytes] = []
    json_columns: set[str] = set()
    for raw in rows:
        head.append(raw)
        for name, value in RAW_ROW.decode(raw).items():
            if name in candidates and value != _NULL:
                candidates.discard(name)
                if bytes(value)[:1] != b'"':
                    json_columns.add(name)
        if not candidates or len(head) >= _PEEK_ROWS:
            break
    return head, json_columns


def _row_converter(source: str, target: str, columns: list[dict[str, Any]], target_columns: list[Column],
                   json_columns: set[str], table: str) -> Callable[[bytes], tuple[Any, ...]]:
    """Raw row JSON -> a tuple in column order, each value decoded (values.py) and adapted to
    what the target's driver binds into the target's column type.

    A table without JSON columns is decoded whole in one call (values.ROW), and only the
    columns that need it converted; one with JSON columns value by value from each value's
    JSON text, so that documents keep their exact text. Decoding the rows of the demo's SQLite
    snapshot (scale 1) takes 0.085 s by the first path against 0.12 s by the second."""
    names = [c["name"] for c in columns]
    raw_plan: list[Callable[[Any], Any]] = []
    value_plan: list[tuple[int, Callable[[Any], Any]]] = []
    adapters: list[tuple[int, Callable[[Any], Any]]] = []
    needs_raw = False
    for i, (column, target_column) in enumerate(zip(columns, target_columns, strict=True)):
        is_json = column["name"] in json_columns
        raw_plan.append(column_decoder(source, column, json_text=is_json))
        needs, post = value_decoder(source, column, json_text=is_json)
        needs_raw = needs_raw or needs
        if post is not None:
            value_plan.append((i, post))
        adapt = _adapter("json" if is_json else column_shape(source, column), target, target_column.type)
        if adapt is not None:
            adapters.append((i, adapt))
    count = 0

    def decode_raw(raw: bytes) -> list[Any]:
        values = RAW_ROW.decode(raw)
        return [decode(values.get(name, _NULL)) for name, decode in zip(names, raw_plan, strict=True)]

    def decode_whole(raw: bytes) -> list[Any]:
        values = ROW.decode(raw)
        out = [values.get(name) for name in names]
        for i, post in value_plan:
            if out[i] is not None:
                out[i] = post(out[i])
        return out

    decode_row = decode_raw if needs_raw else decode_whole

    def convert(raw: bytes) -> tuple[Any, ...]:
        nonlocal count
        count += 1
        try:
            out = decode_row(raw)
            for i, adapt in adapters:
                if out[i] is not None:
                    out[i] = adapt(out[i])
            return tuple(out)
        except (msgspec.DecodeError, ValueError, KeyError, TypeError) as exc:
            raise VerifyError(f"row {count} of table {table} has a value that format v1 does not write "
                              f"({type(exc).__name__}: {exc}); check the snapshot with sqlsnap verify",
                              table=table) from exc

    return convert


def _json_text(value: Any) -> Any:
    return value if isinstance(value, str) else ENCODER.encode(value).decode("utf-8")


def _mysql_time(value: Any) -> Any:
    """ISO 8601 with T and Z (PostgreSQL timestamptz, SQLite text) -> MySQL's DATETIME text."""
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        return value.rstrip("Z").replace("T", " ", 1)
    return value


def _adapter(shape: str, target: str, target_type: str) -> Callable[[Any], Any] | None:
    """What the target's driver needs beyond the decoded value, or None."""
    upper = target_type.upper()
    json_target = (any(w in upper for w in ("JSON", "TEXT", "CHAR", "CLOB")) or upper == "") \
        and not upper.endswith("]")  # an array column takes the list itself
    if shape == "array" and (target != "postgresql" or json_target):
        return _json_text  # a JSON array, in a json or text column
    if target == "mysql":
        if upper.startswith(("DATETIME", "TIMESTAMP")):
            return _mysql_time
        if shape == "value" and json_target:
            return lambda v: _json_text(v) if isinstance(v, dict | list) else v
    if target == "sqlite" and shape in ("value", "numeric"):
        return _sqlite_value
    return None


def _sqlite_value(value: Any) -> Any:
    """sqlite3 binds no list, dict or Decimal: JSON text, and the decimal's digits."""
    if isinstance(value, dict | list):
        return _json_text(value)
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    return value


# -- --jobs: tables side by side --------------------------------------------------------------

#: Raw rows per batch the reading thread hands to a loading thread, and batches queued per
#: table: memory holds at most jobs x 4 x 1000 rows besides the reader's block.
_BATCH_ROWS = 1000
_QUEUED_BATCHES = 4
#: How often (seconds) a blocked hand-over looks whether the other side has stopped.
_POLL_S = 0.1
_END = object()


class _Stopped(Exception):
    """Another thread of the restore failed: this one stops (the other's error is reported)."""


class _Staged(_Restore):
    """``jobs`` > 1 on PostgreSQL and MySQL: each table is loaded on a connection of its own
    (up to ``jobs`` at once) into a staging schema (PostgreSQL) or database (MySQL) named
    ``_sqlsnap_stage_<random>``, committed there, and moved into place at the end in one step:

    * PostgreSQL: one transaction drops the replaced tables, moves every staged table with
      ``ALTER TABLE ... SET SCHEMA``, adds the foreign keys, records the restore and drops the
      empty staging schema; a failure rolls it back and drops the staging schema.
    * MySQL: the keys are checked in the stage (they were declared there pointing to the
      target database), then one atomic ``RENAME TABLE`` sets the replaced tables aside and
      moves the staged ones in; a failure after it renames them back.

    One thread reads the snapshot in file order (a document is one stream; a JSON Lines folder
    is read file after file too) and hands each table's rows, in bounded batches, to the
    thread loading it; decoding and converting happen there."""

    def __init__(self, snap: Any, target: Target, meta: dict[str, Any], selected: list[str], *,
                 replace: bool, append: bool, progress: Callable[[str, int], None] | None,
                 url: str, jobs: int) -> None:
        super().__init__(snap, target, meta, selected, replace=replace, append=append, progress=progress)
        self.url = url
        self.jobs = jobs
        self.result.jobs = jobs
        self.stage = f"_sqlsnap_stage_{os.urandom(4).hex()}"
        #: The target's schema (PostgreSQL) or database (MySQL), where the tables end up.
        self.home = ""
        #: PostgreSQL: the loaders' search path, the stage first.
        self._search_path = ""
        #: Tables loaded into the stage, in file order.
        self.staged: list[Table] = []
        #: MySQL: the staged tables were renamed into the target (a failure renames them back).
        self.moved: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._loaders: list[Target] = []

    def run(self) -> None:
        clash = self._clashes()
        self.result.replaced = clash if self.replace else []
        self._begin()
        q = self.target.quote
        try:
            if self.target.dialect == "postgresql":
                (self.home, path), = self.target.execute(
                    "SELECT current_schema(), current_setting('search_path')", action="reading the schema")
                self._search_path = f"{q(self.stage)}, {path}"
                self.target.execute(f"CREATE SCHEMA {q(self.stage)}", action="creating the staging schema")
                self.target.commit()
                self._load_staged()
                self._move_postgresql(clash)
            else:
                (self.home,), = self.target.execute("SELECT DATABASE()", action="reading the database")
                self.target.execute(f"CREATE DATABASE {q(self.stage)} CHARACTER SET utf8mb4",
                                    action="creating the staging database")
                self._load_staged()
                self._move_mysql(clash)
        except BaseException:
            self._undo_staged()
            raise
        self._drop_aside()
        if self.target.dialect == "mysql":  # committed: what is left is to drop the empty stage
            try:
                self.target.execute(f"DROP DATABASE {q(self.stage)}", action="dropping the staging database")
            except SnapError as exc:
                raise OutputError(f"the restore into {self.target.where} is done, but its empty staging "
                                  f"database could not be dropped ({exc}); drop {self.stage} by hand",
                                  where=self.target.where) from exc

    # -- loading ------------------------------------------------------------------------------

    def _load_staged(self) -> None:
        wanted = set(self.selected)
        futures: list[tuple[Table, Future[int]]] = []
        try:
            with ThreadPoolExecutor(self.jobs, thread_name_prefix="sqlsnap-restore") as pool:
                try:
                    seen: set[str] = set()
                    for name, rows in self.snap.tables(raw=True):
                        if name in wanted:
                            seen.add(name)
                            futures.append(self._hand_over(pool, name, rows))
                    for name in self.selected:  # listed in the metadata, absent from the data
                        if name not in seen:
                            futures.append(self._hand_over(pool, name, iter(())))
                except BaseException:
                    self._stop.set()
                    for _, future in futures:
                        future.cancel()
                    raise
            # Every loader is done: the first error in file order is the one to report.
            for table, future in futures:
                self.result.tables[table.name] = future.result()
                self.staged.append(table)
        except _Stopped:
            for _, future in futures:
                if future.done() and not future.cancelled() and future.exception() is not None \
                        and not isinstance(future.exception(), _Stopped):
                    raise future.exception() from None  # type: ignore[misc]
            raise
        finally:
            for loader in self._loaders:
                loader.close()

    def _hand_over(self, pool: ThreadPoolExecutor, name: str,
                   rows: Iterator[bytes]) -> tuple[Table, Future[int]]:
        """Start loading ``name`` on a loader thread and feed it the rows, in batches."""
        columns = self.meta["tables"][name]["columns"]
        head: list[bytes] = []
        json_columns: set[str] = set()
        if self.source == "mysql":
            head, json_columns = _peek_json(rows, columns)
        table = self._model(name, json_columns)  # PostgreSQL's type lookups stay on this connection
        convert = _row_converter(self.source, self.target.dialect, columns, table.columns, json_columns, name)
        batches: queue.Queue[Any] = queue.Queue(_QUEUED_BATCHES)
        future = pool.submit(self._load_one, table, convert, batches)

        def put(item: Any) -> None:
            while True:
                if self._stop.is_set():
                    raise _Stopped()
                try:
                    batches.put(item, timeout=_POLL_S)
                    return
                except queue.Full:
                    continue

        batch = head
        for raw in rows:
            batch.append(raw)
            if len(batch) >= _BATCH_ROWS:
                put(batch)
                batch = []
        if batch:
            put(batch)
        put(_END)
        return table, future

    def _loader(self) -> Target:
        """This thread's connection to the target, writing into the stage."""
        loader: Target | None = getattr(self._local, "target", None)
        if loader is None:
            loader = open_target(self.url, create=False)
            with self._lock:
                self._loaders.append(loader)
            self._local.target = loader
            _session(loader)
            if loader.dialect == "postgresql":
                # The stage first, for the tables created; the target's path after it, for
                # the types they use (an enum of the target's schema).
                loader.execute("SELECT set_config('search_path', %s, false)", (self._search_path,),
                               action="setting the search path")
            else:
                loader.execute(f"USE {loader.quote(self.stage)}", action="using the staging database")
                loader.references_in = self.home  # keys point where the tables end up
        return loader

    def _load_one(self, table: Table, convert: Callable[[bytes], tuple[Any, ...]],
                  batches: queue.Queue[Any]) -> int:
        def rows() -> Iterator[tuple[Any, ...]]:
            while True:
                try:
                    batch = batches.get(timeout=_POLL_S)
                except queue.Empty:
                    if self._stop.is_set():
                        raise _Stopped() from None
                    continue
                if batch is _END:
                    return
                for raw in batch:
                    yield convert(raw)

        try:
            if self._stop.is_set():
                raise _Stopped()
            loader = self._loader()
            loader.create_table(table, with_foreign_keys=loader.dialect == "mysql")
            loaded = loader.load(table, rows())
            loader.commit()
            if self.progress:
                with self._lock:
                    self.progress(table.name, loaded)
            return loaded
        except BaseException:
            self._stop.set()
            raise

    # -- moving into place ------------------------------------------------------------------------

    def _move_postgresql(self, clash: list[str]) -> None:
        q = self.target.quote
        if clash and self.replace:
            self._drop(clash)
        self.existing -= set(clash) if self.replace else set()
        for table in self.staged:
            self.target.execute(f"ALTER TABLE {q(self.stage)}.{q(table.name)} SET SCHEMA {q(self.home)}",
                                action=f"moving table {table.name} into place", table=table.name)
            self.created.append(table)
        self._add_keys()
        self._record()
        self.target.execute(f"DROP SCHEMA {q(self.stage)}", action="dropping the staging schema")
        self.target.commit()

    def _move_mysql(self, clash: list[str]) -> None:
        q = self.target.quote
        staged_names = {t.name for t in self.staged}

        def where(name: str) -> str:
            return f"{q(self.stage if name in staged_names else self.home)}.{q(name)}"

        for table in self.staged:
            self._check_keys(table, where)
        moving = [t.name for t in self.staged]
        if PROVENANCE_TABLE not in self.existing:  # created and filled in the stage, moved in with the rest
            self.target.execute(f"USE {q(self.stage)}", action="using the staging database")
            self._record()
            self.target.commit()
            self.target.execute(f"USE {q(self.home)}", action="using the target database")
            moving.append(PROVENANCE_TABLE)
            self.created = []
        renames = []
        if clash and self.replace:
            suffix = os.urandom(4).hex()
            self.aside = {name: f"_sqlsnap_old_{suffix}_{i}" for i, name in enumerate(clash)}
            renames += [f"{q(name)} TO {q(old)}" for name, old in self.aside.items()]
        renames += [f"{q(self.stage)}.{q(name)} TO {q(self.home)}.{q(name)}" for name in moving]
        self.target.execute(f"RENAME TABLE {', '.join(renames)}", action="moving the tables into place")
        self.moved = moving
        if PROVENANCE_TABLE in self.existing:
            self._record()
        self.target.execute("SET SESSION foreign_key_checks = 1", action="setting the session")
        self.target.commit()
        self.moved = []

    def _undo_staged(self) -> None:
        self._stop.set()
        try:
            self.target.rollback()
        except SnapError:
            pass  # a lost connection: the server rolls back what was not committed
        _undo(self.target, self.reopen, self._drop_stage)

    def _drop_stage(self, target: Target) -> None:
        q = target.quote
        if target.dialect == "postgresql":
            target.execute(f"DROP SCHEMA IF EXISTS {q(self.stage)} CASCADE",
                           action="dropping the staging schema")
            target.commit()
            return
        renames = [f"{q(self.home)}.{q(name)} TO {q(self.stage)}.{q(name)}" for name in self.moved]
        renames += [f"{q(self.home)}.{q(old)} TO {q(self.home)}.{q(name)}"
                    for name, old in self.aside.items()]
        if renames:  # out of the target again, and the replaced tables back
            target.execute(f"RENAME TABLE {', '.join(renames)}", action="putting the tables back")
            self.moved, self.aside = [], {}
        target.execute(f"DROP DATABASE IF EXISTS {q(self.stage)}", action="dropping the staging database")


def _undo(target: Target, reopen: Callable[[], Target] | None, undo: Callable[[Target], None]) -> None:
    """Run ``undo`` on the restore's connection, or on a new one (``reopen``) when that was lost
    (the server went away or the connection was killed). Its own failure is dropped: the error
    that stopped the restore is the one to report."""
    try:
        try:
            undo(target)
        except SnapError:
            if reopen is None:
                raise
            with reopen() as fresh:
                undo(fresh)
    except SnapError:
        pass
