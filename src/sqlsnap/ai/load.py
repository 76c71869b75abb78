"""A snapshot loaded into a DuckDB file, streamed in bounded memory, and the cache of them.

::

    load_snapshot("app.json.zst", "app.duckdb")           # typed tables + _sqlsnap_* tables
    path = cached_database("app.json.zst")                # loads once per SHA-256, then reuses

The rows come from :func:`sqlsnap.open_snapshot` one at a time (a document, JSON Lines,
compressed, encrypted, local or S3), never from DuckDB's JSON reader: it refuses objects
above 16 MB and needed 298 MB of memory for a 28 MB document here (ECOSYSTEM.md section 15).

Besides the tables, the file holds what an analyst (or an assistant) needs to read them:

* ``_sqlsnap_tables``: each table's rows, primary key, row filter, left-out columns;
* ``_sqlsnap_columns``: each column with its source type, its DuckDB type and its
  ``status``: ``kept``, the rule applied (``hash``, ``mask``, ``fake``, ``redact``, ``null``,
  ...) or ``excluded`` (not in the snapshot, with the reason);
* ``_sqlsnap_foreign_keys``: the foreign keys, recorded and never enforced, so orphans stay
  visible;
* ``_sqlsnap_metadata``: the snapshot's other metadata (``key``, ``value`` as JSON).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import msgspec

from ..errors import OutputError, UsageError
from ..format import MANIFEST, SIDECAR_SUFFIX, parse_sidecar
from ..model import Column, ForeignKey, Table
from ..snapshot import open_snapshot
from ..stores import open_store
from ..urls import parse_url

__all__ = ["LoadResult", "cache_key", "cached_database", "load_snapshot"]

#: Bumped when what the loader writes changes, so that older cached files are not reused.
LOADER_VERSION = 1
#: Rows per commit while loading a table, and DuckDB's memory limit meanwhile: memory then
#: stays at the limit plus ~90 MB whatever the size. Loading the demo at scale 30 (300k rows,
#: bench/ai.py) peaked at 496 MB of RSS with one commit per table and DuckDB's default limit
#: (80% of the machine; a transaction's appended rows stay in memory until it commits), 332 MB
#: with 50k-row commits and a 256 MB limit, 217 MB with 128 MB (206 MB at scale 10).
COMMIT_ROWS = 50_000
MEMORY_LIMIT = "128MB"
#: Bytes per read when the SHA-256 must be computed (no ``.sha256`` file beside it).
_HASH_BLOCK = 1 << 20

_ENCODE = msgspec.json.Encoder(decimal_format="number").encode


@dataclass(frozen=True)
class LoadResult:
    path: str
    tables: int
    rows: int


def _meta_tables(target: Any) -> None:
    target._execute("CREATE TABLE _sqlsnap_tables (table_name VARCHAR, position INTEGER, rows BIGINT, "
                    "primary_key VARCHAR[], excluded_columns VARCHAR[], row_filter JSON)")
    target._execute("CREATE TABLE _sqlsnap_columns (table_name VARCHAR, column_name VARCHAR, "
                    "position INTEGER, source_type VARCHAR, duckdb_type VARCHAR, nullable BOOLEAN, "
                    "status VARCHAR, rule_options JSON, note VARCHAR)")
    target._execute("CREATE TABLE _sqlsnap_foreign_keys (table_name VARCHAR, columns VARCHAR[], "
                    "ref_table VARCHAR, ref_columns VARCHAR[])")
    target._execute("CREATE TABLE _sqlsnap_metadata (key VARCHAR, value JSON)")


def _column_rows(name: str, entry: dict[str, Any], dialect: str) -> list[tuple[Any, ...]]:
    from ..targets.duckdb import snapshot_type

    rows: list[tuple[Any, ...]] = []
    for i, col in enumerate(entry.get("columns", [])):
        rule = col.get("rule")
        options = col.get("rule_options")
        note = "secret included on purpose" if col.get("secret") else None
        rows.append((name, col["name"], i, col.get("type"), snapshot_type(col, dialect), col.get("nullable"),
                     rule or "kept", _ENCODE(options).decode() if options else None, note))
    for excluded in entry.get("excluded_columns", []):
        cname = excluded["name"] if isinstance(excluded, dict) else str(excluded)
        reason = excluded.get("reason") if isinstance(excluded, dict) else None
        rows.append((name, cname, len(rows), None, None, None, "excluded", None, reason))
    return rows


def load_snapshot(location: str, database: str, *, identities: Sequence[Any] = (),
                  s3_endpoint: str | None = None, replace: bool = False) -> LoadResult:
    """Load the snapshot at ``location`` into a new DuckDB file ``database`` (the module
    docstring says what it holds). The file appears only when whole: it is written under a
    temporary name beside it, then renamed. Raises :class:`MissingDriverError` without the
    ``duckdb`` extra, the reader's errors for a damaged snapshot, :class:`OutputError` when
    ``database`` already exists (unless ``replace``: the new file then takes its place only
    when whole) or cannot be written."""
    from ..targets import target_class

    if os.path.exists(database) and not replace:
        raise OutputError(f"{database} already exists; remove it or choose another file", path=database)
    cls = target_class("duckdb")
    folder = os.path.dirname(os.path.abspath(database))
    if not os.path.isdir(folder):
        raise OutputError(f"folder {folder} does not exist; create it or choose another file", path=database)
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(database)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(temp)  # DuckDB creates the file itself; an empty file is not a database to it
    try:
        with open_snapshot(location, identities=identities, s3_endpoint=s3_endpoint) as snap, \
                cls.open(parse_url(f"duckdb:///{temp}", target=True)) as target:
            metadata = snap.metadata
            dialect = str(metadata.get("source", {}).get("dialect", ""))
            entries: dict[str, dict[str, Any]] = metadata["tables"]
            filters = metadata.get("filters") or {}
            target.execute(f"SET memory_limit = '{MEMORY_LIMIT}'", action="setting the memory limit")
            _meta_tables(target)
            total = 0
            for position, (name, rows) in enumerate(snap.tables()):
                entry = entries[name]
                columns = _column_rows(name, entry, dialect)
                kept = [c for c in columns if c[6] != "excluded"]
                # Nullable whatever the source said: a rule (null, a segment's filter) may empty a
                # column, and DuckDB would check NOT NULL for nothing an analyst needs.
                table = Table(name, "main", name, [Column(c[1], c[4], True) for c in kept],
                              foreign_keys=[ForeignKey(tuple(fk["columns"]), fk["references"]["table"],
                                                       tuple(fk["references"]["columns"]))
                                            for fk in entry.get("foreign_keys", [])])
                target.create_table(table)
                values = _values(rows, [c[1] for c in kept], [c[4] for c in kept])
                # Committed every COMMIT_ROWS: DuckDB holds a transaction's appended rows in
                # memory until it commits (the file is still complete only when renamed).
                while n := target.load(table, islice(values, COMMIT_ROWS)):
                    total += n
                    target.commit()
                target.add_foreign_keys(table)
                with target._boundary("recording the metadata", name):
                    target.connection.executemany("INSERT INTO _sqlsnap_columns VALUES (?,?,?,?,?,?,?,?,?)",
                                                  columns)
                    target._execute(
                        "INSERT INTO _sqlsnap_tables VALUES (?,?,?,?,?,?)",
                        [name, position, entry.get("rows"), list(entry.get("primary_key", [])),
                         [c[1] for c in columns if c[6] == "excluded"],
                         _ENCODE(filters[name]).decode() if name in filters else None])
                target.commit()
            with target._boundary("recording the metadata"):
                items = [(k, _ENCODE(v).decode()) for k, v in metadata.items() if k != "tables"]
                items.append(("sqlsnap_loader_version", str(LOADER_VERSION)))
                target.connection.executemany("INSERT INTO _sqlsnap_metadata VALUES (?, ?)", items)
            target.commit()
            target.connection.execute("CHECKPOINT")
        os.replace(temp, database)
    except BaseException:
        for leftover in (temp, temp + ".wal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        raise
    return LoadResult(database, len(entries), total)


def _values(rows: Iterator[dict[str, Any]], names: list[str], types: list[str]) -> Iterator[tuple[Any, ...]]:
    """Each row's values in column order, converted for the appender."""
    from ..targets.duckdb import value_converter

    plan = [(i, convert) for i, t in enumerate(types) if (convert := value_converter(t)) is not None]
    for row in rows:
        values = [row.get(n) for n in names]
        for i, convert in plan:
            if values[i] is not None:
                values[i] = convert(values[i])
        yield tuple(values)


# -- the cache ----------------------------------------------------------------------------------


def cache_key(location: str, *, s3_endpoint: str | None = None) -> str:
    """The snapshot's SHA-256: from its ``.sha256`` file when there is one, else computed from
    its bytes as stored. A JSON Lines folder's key is the SHA-256 of its manifest, which holds
    each table's checksum."""
    if location == "-":
        raise UsageError("a snapshot read from standard input cannot be cached; give its path")
    store, key = open_store(location, s3_endpoint=s3_endpoint)
    manifest = store.read_small(f"{key.rstrip('/')}/{MANIFEST}" if key.rstrip("/") else MANIFEST)
    if manifest is not None:
        return hashlib.sha256(manifest).hexdigest()
    sidecar = store.read_small(key + SIDECAR_SUFFIX, 4096)
    if sidecar is not None:
        return parse_sidecar(sidecar, store.url(key + SIDECAR_SUFFIX))
    digest = hashlib.sha256()
    raw = store.open(key)
    try:
        while block := raw.read(_HASH_BLOCK):
            digest.update(block)
    finally:
        raw.close()
    return digest.hexdigest()


def default_cache_dir() -> str:
    """``$SQLSNAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/sqlsnap``, else ``~/.cache/sqlsnap``."""
    if env := os.environ.get("SQLSNAP_CACHE_DIR"):
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sqlsnap")


def cached_database(location: str, *, cache_dir: str | None = None, identities: Sequence[Any] = (),
                    s3_endpoint: str | None = None) -> str:
    """The path of a DuckDB file holding the snapshot at ``location``, loading it on first use.

    The file is keyed by the snapshot's SHA-256 (:func:`cache_key`): a changed snapshot is
    loaded again, an unchanged one never. It lives beside a local snapshot
    (``app.json.zst`` -> ``.app.json.zst.<sha256[:16]>.duckdb``) when that folder is
    writable, else in ``cache_dir`` (default :func:`default_cache_dir`): always for a remote
    snapshot."""
    digest = cache_key(location, s3_endpoint=s3_endpoint)
    name = f"{digest[:16]}-v{LOADER_VERSION}.duckdb"
    candidates: list[str] = []
    if cache_dir is None and "://" not in location and location != "-":
        here = os.path.abspath(location.rstrip("/"))
        folder = os.path.dirname(here)
        if os.access(folder, os.W_OK):
            candidates.append(os.path.join(folder, f".{os.path.basename(here)}.{name}"))
    folder = cache_dir or default_cache_dir()
    candidates.append(os.path.join(folder, name))
    for path in candidates:
        if os.path.exists(path):
            return path
    path = candidates[0]
    if path == candidates[-1]:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the cache folder {folder} ({exc.strerror}); set "
                              "SQLSNAP_CACHE_DIR to a writable folder", path=folder) from None
    try:
        load_snapshot(location, path, identities=identities, s3_endpoint=s3_endpoint)
    except OutputError:
        if os.path.exists(path):  # another process loaded it meanwhile
            return path
        raise
    return path
