"""The export: one snapshot, tables read side by side, one document (or folder) written.

Flow (DESIGN.md): source -> plan -> writer -> codec -> checksum tee -> sink.

Every table is first streamed as JSON lines into a spool file (the table's own file for
``--format jsonl``), counting and hashing its rows. Only then is the document assembled:
metadata first, with the exact row counts and checksums that only the finished tables can
give, followed by the spools. This costs disk space equal to the uncompressed data in the
output folder while the export runs, and buys three things: metadata first without a
second pass over the database, tables exported in parallel in any order, and memory that
never holds more than a few chunks.
"""

from __future__ import annotations

import fnmatch
import getpass
import hashlib
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from . import __version__
from .anonymize import compile_projections
from .errors import Interrupted, NotFoundError, UsageError
from .output import (
    COPY_BYTES,
    SUFFIXES,
    AtomicDir,
    Compressed,
    HashingWriter,
    compression_for,
    os_error,
)
from .plan import Plan, build_plan, plan_options
from .policy import Policy
from .schema import Table
from .sinks import expand_placeholders, is_remote, plain_name, prepare_destination
from .sources import Source, make_source
from .sources.base import Cancelled, Projection
from .urls import parse_url

FORMATS = ("json", "jsonl")
FORMAT_VERSION = 1
#: Default parallelism: one reader per core, at most 4. Two connections sharing a snapshot
#: reached 0.65x of one on this 2-core machine (ECOSYSTEM.md section 13); more readers than
#: cores only make the server processes compete.
DEFAULT_JOBS = max(1, min(4, os.cpu_count() or 1))


class Progress(Protocol):
    """Receives progress from the worker threads; implementations must be thread-safe."""

    def start(self, tables: Sequence[Table]) -> None: ...
    def advance(self, table: str, rows: int, nbytes: int) -> None: ...
    def table_done(self, table: str, rows: int, nbytes: int) -> None: ...
    def finish(self) -> None: ...


@dataclass
class TableResult:
    name: str
    rows: int = 0
    #: Bytes of the table's JSON lines (uncompressed).
    bytes: int = 0
    #: SHA-256 of the table's rows as JSON lines, each ended by a newline.
    sha256: str = ""
    file: str | None = None


@dataclass
class ExportResult:
    """What an export produced. ``summary()`` is what ``--json`` prints."""

    path: str
    format: str
    compression: str
    tables: dict[str, TableResult]
    bytes: int
    sha256: str | None
    seconds: float
    metadata: dict[str, Any] = field(repr=False)
    #: Where the ``sha256sum``-style checksum file was stored (None for stdout and folders).
    checksum_file: str | None = None
    encrypted: bool = False
    #: The plan the export followed (:class:`sqlsnap.plan.Plan`): what ``sqlsnap plan`` prints.
    plan: Any = field(default=None, repr=False)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "compression": self.compression,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "checksum_file": self.checksum_file,
            "encrypted": self.encrypted,
            "tables": len(self.tables),
            "rows": self.total_rows,
            "rows_per_table": {name: t.rows for name, t in self.tables.items()},
            "seconds": round(self.seconds, 3),
            "source": self.metadata["source"],
        }


def select_tables(
    tables: Sequence[Table], include: Sequence[str] | None, exclude: Sequence[str] | None
) -> tuple[list[Table], list[str]]:
    """Apply ``--tables`` and ``--exclude-tables`` globs; return (kept, excluded names)."""
    names = [t.name for t in tables]
    if include:
        unmatched = [p for p in include if not fnmatch.filter(names, p)]
        if unmatched:
            raise NotFoundError(
                f"no table matches {', '.join(repr(p) for p in unmatched)} in --tables; tables are: "
                + (", ".join(sorted(names)) or "(none)"), table=unmatched[0])
        kept = [t for t in tables if any(fnmatch.fnmatchcase(t.name, p) for p in include)]
    else:
        kept = list(tables)
    excluded = [t.name for t in kept if any(fnmatch.fnmatchcase(t.name, p) for p in exclude or ())]
    return [t for t in kept if t.name not in excluded], sorted(excluded)


def dependency_order(tables: Sequence[Table]) -> list[Table]:
    """Parents before children (so a restore can load in file order); ties by name; cycles
    are broken by name."""
    by_name = {t.name: t for t in tables}
    parents = {t.name: {fk.ref_table for fk in t.foreign_keys if fk.ref_table in by_name} - {t.name}
               for t in tables}
    order: list[Table] = []
    done: set[str] = set()
    remaining = sorted(by_name)
    while remaining:
        ready = [n for n in remaining if parents[n] <= done] or remaining[:1]
        for n in ready:
            order.append(by_name[n])
            done.add(n)
        remaining = [n for n in remaining if n not in done]
    return order


def default_destination(database: str, when: datetime, fmt: str, compression: str | None) -> str:
    stem = os.path.splitext(os.path.basename(database))[0] or "database"
    stamp = when.strftime("%Y-%m-%dT%H-%M-%SZ")
    if fmt == "jsonl":
        return f"{stem}-export-{stamp}"
    return f"{stem}-export-{stamp}.json{SUFFIXES.get(compression or 'none', '')}"


def _table_filename(name: str, taken: set[str]) -> str:
    safe = "".join("_" if ch in "/\\\0" else ch for ch in name).lstrip(".") or "_"
    candidate, n = safe, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{safe}~{n}"
    taken.add(candidate.lower())
    return candidate


class _Workspace:
    """Spool files for the document format, removed whatever happens."""

    def __init__(self, near: str | None) -> None:
        folder = os.path.dirname(os.path.abspath(near)) if near else None
        try:
            self.path = tempfile.mkdtemp(prefix=".sqlsnap-spool-", dir=folder)
        except OSError as exc:
            raise os_error(exc, near or tempfile.gettempdir()) from None

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _run_tables(
    source: Source,
    tables: Sequence[Table],
    jobs: int,
    open_table: Callable[[Table], tuple[Any, Callable[[], None]]],
    results: dict[str, TableResult],
    progress: Progress | None,
    projections: dict[str, Projection] | None = None,
) -> None:
    """Stream every table through ``open_table``'s writer, ``jobs`` tables at a time; tables
    in ``projections`` are read through their projection (the policy's columns and rules)."""
    cancel = threading.Event()
    work: queue.Queue[Table] = queue.Queue()
    # Largest first, so the longest table starts at once and the others fill in around it.
    for t in sorted(tables, key=lambda t: -(t.estimated_rows or 0)):
        work.put(t)
    errors: list[BaseException] = []
    readers: list[Any] = []
    lock = threading.Lock()

    def export_one(reader: Any, table: Table) -> None:
        writer, finish = open_table(table)
        result = results[table.name]
        digest = hashlib.sha256()
        for chunk, rows in reader.read(table, cancel, (projections or {}).get(table.name)):
            digest.update(chunk)
            writer.write(chunk)
            result.rows += rows
            result.bytes += len(chunk)
            if progress:
                progress.advance(table.name, rows, len(chunk))
        finish()
        result.sha256 = digest.hexdigest()
        if progress:
            progress.table_done(table.name, result.rows, result.bytes)

    def worker() -> None:
        try:
            with source.reader() as reader:
                with lock:
                    readers.append(reader)
                while not cancel.is_set():
                    try:
                        table = work.get_nowait()
                    except queue.Empty:
                        return
                    export_one(reader, table)
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            with lock:
                errors.append(exc)
            cancel.set()
            for r in list(readers):
                r.cancel()

    threads = [threading.Thread(target=worker, name=f"sqlsnap-reader-{i}", daemon=True)
               for i in range(jobs)]
    for th in threads:
        th.start()
    try:
        for th in threads:
            while th.is_alive():
                th.join(0.2)
    except KeyboardInterrupt:
        cancel.set()
        for r in list(readers):
            r.cancel()
        for th in threads:
            th.join(10)
        raise Interrupted("interrupted; the export was abandoned and no file was left behind") from None
    if errors:
        exc = errors[0]
        if isinstance(exc, OSError):
            raise os_error(exc, getattr(exc, "filename", None) or "the output") from None
        raise exc


def _metadata(
    source_info: dict[str, Any],
    tables: Sequence[Table],
    results: dict[str, TableResult],
    excluded: list[str],
    *,
    when: datetime,
    exported_by: str,
    environment: str | None,
    fmt: str,
    plan: Plan | None = None,
) -> dict[str, Any]:
    meta_tables: dict[str, Any] = {}
    for t in tables:
        r = results[t.name]
        entry: dict[str, Any] = {
            "rows": r.rows,
            "columns": [c.to_metadata() for c in t.columns],
            "primary_key": list(t.primary_key),
            "foreign_keys": [fk.to_metadata() for fk in t.foreign_keys],
            "excluded_columns": [],
            "sha256": r.sha256,
        }
        if plan is not None:  # the columns, keys and exclusions as exported, with their rules
            entry.update(plan.table(t.name).metadata(t))
        if r.file:
            entry["file"] = r.file
        meta_tables[t.name] = entry
    return {
        "format": "sqlsnap",
        "version": FORMAT_VERSION,
        "generator": f"sqlsnap {__version__}",
        "exported_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "exported_by": exported_by,
        "export_type": "full",
        "environment": environment,
        "source": {k: source_info[k] for k in ("dialect", "server_version", "database", "host")},
        "layout": fmt,
        "tables": meta_tables,
        "excluded_tables": excluded,
        "filters": {},
        "total_tables": len(tables),
        "total_rows": sum(results[t.name].rows for t in tables),
        # What was left out, masked and included on purpose; never the hash key.
        **({"policy": plan.metadata()} if plan is not None else {}),
    }


def _encode_metadata(metadata: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(metadata), indent=2)


def _write_document(
    sink: Any,
    compression: str,
    metadata: dict[str, Any],
    order: Sequence[Table],
    spools: dict[str, str],
    recipients: Sequence[Any] = (),
) -> tuple[int, str]:
    """Assemble ``{"metadata": ..., "data": {...}}`` from the spools: one row per line.

    Bytes go data -> compression -> age encryption (with ``recipients``) -> SHA-256 -> sink."""
    tee = HashingWriter(sink.fh)
    encrypting = None
    if recipients:
        from .crypto import Encrypting

        encrypting = Encrypting(tee, recipients)
    out = Compressed(encrypting or tee, compression)
    try:
        out.write(b'{"metadata": ' + _encode_metadata(metadata) + b',\n"data": {')
        for i, table in enumerate(order):
            out.write((b"," if i else b"") + b"\n" + msgspec.json.encode(table.name) + b": [")
            with open(spools[table.name], "rb") as fh:
                pending = b""
                while block := fh.read(COPY_BYTES):
                    if pending:
                        out.write(pending.replace(b"\n", b",\n"))
                    else:
                        out.write(b"\n")
                    pending = block
                if pending:
                    # Rows never hold a raw newline (JSON escapes it), so each one ends a row.
                    out.write(pending[:-1].replace(b"\n", b",\n") + b"\n")
            out.write(b"]")
        out.write(b"\n}}\n")
        out.close()
        if encrypting:
            encrypting.close()
    except BaseException:
        if encrypting:
            encrypting.abort()
        raise
    return tee.bytes, tee.sha256.hexdigest()


def export(
    source: str,
    destination: str | None = None,
    *,
    format: str = "json",
    compress: str | None = None,
    schemas: Sequence[str] | None = None,
    tables: Sequence[str] | None = None,
    exclude_tables: Sequence[str] | None = None,
    jobs: int | None = None,
    exported_by: str | None = None,
    environment: str | None = None,
    server_json: bool = True,
    progress: Progress | None = None,
    encrypt_to: Sequence[str] = (),
    encrypt_to_file: Sequence[str] = (),
    s3_endpoint: str | None = None,
    exclude_columns: Sequence[str] | None = None,
    include_secrets: Sequence[str] | None = None,
    anonymize: bool = False,
    policy: str | Policy | None = None,
    hash_key: bytes | str | None = None,
    hash_key_file: str | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> ExportResult:
    """Export every table of ``source`` (a database URL) to ``destination``.

    What leaves the database follows the plan that :func:`sqlsnap.plan` returns for the same
    arguments (docs/policy.md): secret-looking columns are left out unless named in
    ``include_secrets``; ``exclude_columns`` takes ``TABLE.COLUMN`` globs; ``anonymize``
    applies the PII preset; ``policy`` is a policy file (or a loaded
    :class:`sqlsnap.policy.Policy`); ``hash_key`` / ``hash_key_file`` / ``$SQLSNAP_HASH_KEY``
    give the key of hash, fake and shift-dates. ``on_plan`` is called with the plan before
    any row is read.

    ``destination`` is a file path (a folder for ``format="jsonl"``), ``s3://bucket/key``,
    ``"-"`` for standard output, or None for ``<database>-export-<UTC time>.json`` in the
    current folder. It may hold ``{database}``, ``{timestamp}``, ``{environment}`` and
    ``{export_type}``. ``encrypt_to`` (age or SSH public keys) and ``encrypt_to_file``
    (recipients files) encrypt the document with age; ``s3_endpoint`` reaches S3-compatible
    stores other than AWS. A file or object gets a ``<name>.sha256`` checksum file beside it.
    Raises :class:`sqlsnap.SnapError` subclasses with one-line messages.
    """
    started = time.monotonic()
    if format not in FORMATS:
        raise UsageError(f"unknown format '{format}'; use one of: {', '.join(FORMATS)}")
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs must be at least 1")
    url = parse_url(source)
    # The policy file, patterns and hash key are checked before connecting.
    plan_opts, key = plan_options(
        dialect=url.dialect, tables=tables, exclude_tables=exclude_tables, exclude_columns=exclude_columns,
        include_secrets=include_secrets, anonymize=anonymize, policy=policy, hash_key=hash_key,
        hash_key_file=hash_key_file)
    when = datetime.now(UTC).replace(microsecond=0)
    recipients: list[Any] = []
    if encrypt_to or encrypt_to_file:
        from .crypto import SUFFIX as AGE_SUFFIX
        from .crypto import load_recipients

        recipients = load_recipients(encrypt_to, encrypt_to_file)
    if destination is None:
        destination = default_destination(url.database, when, format, compress)
        if recipients and format == "json":
            destination += AGE_SUFFIX
    destination = expand_placeholders(destination, database=url.database, when=when,
                                      environment=environment, export_type="full")
    if destination == "-" and format == "jsonl":
        raise UsageError("JSON Lines output is a folder; give it with -o FOLDER")
    compression = compression_for(compress, None if destination == "-" else plain_name(destination))
    target = prepare_destination(destination, format=format, encrypted=bool(recipients),
                                 s3_endpoint=s3_endpoint)
    checksum_file: str | None = None

    src = make_source(url)
    if not server_json and hasattr(src, "server_json"):
        src.server_json = False  # type: ignore[attr-defined]
    with src:
        source_info = src.info()
        reflected = {t.name: t for t in src.list_tables(schemas)}
        the_plan = build_plan(list(reflected.values()), plan_opts, source_info)
        order = [reflected[t.name] for t in the_plan.tables]
        excluded = [e.name for e in the_plan.excluded_tables]
        projections = compile_projections(the_plan, reflected, key, url.dialect)
        if on_plan is not None:  # before any row is read: the CLI prints its warnings here
            on_plan(the_plan)
        results = {t.name: TableResult(t.name) for t in order}
        n_jobs = max(1, min(jobs or DEFAULT_JOBS, src.max_readers, len(order) or 1))
        if progress:
            progress.start(order)

        metadata_kw = dict(when=when, exported_by=exported_by or getpass.getuser(),
                           environment=environment, fmt=format, plan=the_plan)
        if format == "jsonl":
            folder = AtomicDir(destination)
            try:
                taken: set[str] = {"metadata.json"}
                suffix = ".jsonl" + SUFFIXES[compression]
                for t in order:
                    results[t.name].file = _table_filename(t.name, taken) + suffix

                def open_table(table: Table) -> tuple[Any, Callable[[], None]]:
                    fh = open(os.path.join(folder.tmp, results[table.name].file or ""), "xb")  # noqa: SIM115
                    out = Compressed(fh, compression)

                    def finish() -> None:
                        out.close()
                        fh.flush()
                        os.fsync(fh.fileno())
                        fh.close()

                    return out, finish

                _run_tables(src, order, n_jobs, open_table, results, progress, projections)
                metadata = _metadata(source_info, order, results, excluded, **metadata_kw)  # type: ignore[arg-type]
                manifest = os.path.join(folder.tmp, "metadata.json")
                with open(manifest, "xb") as fh:
                    fh.write(_encode_metadata(metadata) + b"\n")
                folder.commit()
            except OSError as exc:
                folder.abort()
                raise os_error(exc, destination) from None
            except BaseException:
                folder.abort()
                raise
            size = sum(os.path.getsize(os.path.join(destination, f)) for f in os.listdir(destination))
            sha256 = None
        else:
            # Spools go beside a local file (same disk as the result), else to the temp folder.
            workspace = _Workspace(None if destination == "-" or is_remote(destination) else destination)
            sink: Any = None
            try:
                spools = {t.name: os.path.join(workspace.path, f"{i}.jsonl") for i, t in enumerate(order)}

                def open_table(table: Table) -> tuple[Any, Callable[[], None]]:
                    fh = open(spools[table.name], "xb")  # noqa: SIM115
                    return fh, fh.close

                _run_tables(src, order, n_jobs, open_table, results, progress, projections)
                metadata = _metadata(source_info, order, results, excluded, **metadata_kw)  # type: ignore[arg-type]
                # The snapshot is no longer needed: end it before the final copy.
                src.close()
                sink = target.sink()
                size, sha256 = _write_document(sink, compression, metadata, order, spools, recipients)
                sink.commit()
                checksum_file = target.write_checksum(sha256)
            except OSError as exc:
                if sink:
                    sink.abort()
                raise os_error(exc, destination) from None
            except BaseException:
                if sink:
                    sink.abort()
                raise
            finally:
                workspace.cleanup()
    if progress:
        progress.finish()
    return ExportResult(
        path=destination,
        format=format,
        compression=compression,
        tables=results,
        bytes=size,
        sha256=sha256,
        seconds=time.monotonic() - started,
        metadata=metadata,
        checksum_file=checksum_file,
        encrypted=bool(recipients),
        plan=the_plan,
    )



