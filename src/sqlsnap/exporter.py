"""The export: one snapshot, tables read side by side, one document (or folder) written.

Flow (DESIGN.md): source -> plan -> writer -> codec -> checksum tee -> sink.

The document is written front to back while the tables are read. Its metadata comes first
and holds the exact row count of every table, so those are counted in the snapshot before
any row is read (``SELECT count(*)``: the snapshot makes them exact, and a reader that
then streams a different number fails the export). The per-table checksums (XXH3-128),
which only the finished rows can give, go in the document's last member, ``"checksums"``.

``jobs`` readers share the snapshot, each reading a table or a page range of a large one
(``Source.split``: parts of a few MB, taken in document order). The part the writer is on
passes from its reader to the writer in memory, a few chunks at a time; a part read ahead
of the writer waits in memory, up to a budget shared by all parts, and beyond it in an
unlinked spool file (nothing is left on disk, even after a kill) until the writer reaches
it. With one reader, tables are read in document order and nothing is spooled; an encrypted
export never spools (no plaintext on disk), so its readers wait for the writer. The writer
sees each table's bytes in order, so it computes the per-table checksums (and the file's
SHA-256, on a background thread), and the reader threads do nothing but drain the server.
The JSON Lines layout writes each table to its own file as it is read.
"""

from __future__ import annotations

import fnmatch
import getpass
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from . import __version__
from .anonymize import compile_projections
from .errors import Interrupted, NotFoundError, SnapError, UsageError
from .output import (
    COPY_BYTES,
    SUFFIXES,
    TABLE_CHECKSUM,
    TABLE_CHECKSUMS,
    AtomicDir,
    Compressed,
    HashingWriter,
    WritebackFile,
    compression_for,
    os_error,
)
from .plan import Plan, build_plan, plan_options
from .policy import Policy
from .schema import Table
from .sinks import expand_placeholders, is_remote, plain_name, prepare_destination
from .sources import Source, make_source
from .sources.base import CHUNK_BYTES, Cancelled, Projection, TableReader
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
    #: The table's checksum (``TABLE_CHECKSUM``: XXH3-128) of its rows as JSON lines, each
    #: ended by a newline.
    checksum: str = ""
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


#: Bytes of the table the writer is on that its reader may hold in memory before it waits
#: for the writer: a few chunks, so reading and writing overlap without memory growing.
LIVE_BYTES = 4 * CHUNK_BYTES


#: With several readers, every table at least twice this size (of storage, as the source
#: estimates it) is read in parts of about this size (``Source.split``), taken in document
#: order. Small parts keep what a reader reads ahead of the writer small enough to wait in
#: memory: with halves of the largest table and whole other tables, 590 MB of the
#: benchmark's 1 GB document went through spool files; with 4 MB parts and 16 MiB ahead,
#: none, but the peak RSS grew from 63 to 76 MB from scale 25 to 100 (bench/README.md).
PART_BYTES = 2 << 20
#: The most bytes that parts read ahead of the writer may hold in memory at once, shared by
#: every part; beyond it they go to spool files.
AHEAD_BYTES = 8 << 20
#: The most bytes that parts read ahead of the writer may hold in spool files at once; a
#: reader that would go over waits for the writer. Without a bound the readers spooled up
#: to 600 MB of the benchmark's 1 GB document (largest-first reading: all of it). With two
#: readers, 512 MiB cost no time there (6.26-6.31 s against 6.21-6.37 s); 256 MiB cost
#: 0.4 s.
SPOOL_BYTES = 512 << 20


class _Budget:
    """Bytes held by parts read ahead of the writer (in memory, or in spool files), shared
    by every channel of an export, at most ``limit``.

    Waiting for room is deadlock-free because parts are read in document order: the part the
    writer is on was picked before every part after it, so its reader is live (never waits
    here) and the writer always moves on, releasing what it has written out."""

    def __init__(self, limit: int, cancel: threading.Event) -> None:
        self.limit = limit
        self.cancel = cancel
        self.used = 0
        self.cond = threading.Condition()

    def acquire(self, n: int, gave_up: Callable[[], bool]) -> bool:
        """Reserve ``n`` bytes, waiting while over the limit; False (nothing reserved) if
        ``gave_up()`` turns true meanwhile (the writer reached the channel)."""
        with self.cond:
            while self.used and self.used + n > self.limit:
                if self.cancel.is_set():
                    raise Cancelled
                if gave_up():
                    return False
                self.cond.wait(0.2)
            self.used += n
            return True

    def try_acquire(self, n: int) -> bool:
        """Reserve ``n`` bytes if there is room now."""
        with self.cond:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class _Channel:
    """One part's JSON lines on their way from its reader to the document writer.

    While the writer is on this part ("live"), chunks pass in memory, at most
    ``LIVE_BYTES`` ahead of it. Before that, they wait in memory while the export's
    read-ahead budget (``ahead``) has room, then in a spool file (unless ``may_spool`` is
    off: then the reader waits for the writer). They come out in the order they went in:
    memory, spool, then live."""

    def __init__(self, folder: str, cancel: threading.Event, may_spool: bool,
                 budget: _Budget | None = None, ahead: _Budget | None = None) -> None:
        self.folder = folder
        self.cancel = cancel
        self.budget = budget
        self.ahead_budget = ahead
        self.cond = threading.Condition()
        self.ahead: deque[bytes] = deque()  # read ahead, held in memory
        self.spool: Any = None
        self.spooled = 0  # bytes in the spool
        self.taken = 0  # bytes of the spool the writer has taken
        self.live = not may_spool
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.done = False

    # -- the reader's side ------------------------------------------------------------------

    def write(self, chunk: bytes) -> None:
        with self.cond:
            # In memory while the read-ahead budget allows, and only until the first chunk
            # spooled (the order). The budget's lock is only ever taken inside this one.
            if not self.live and self.spool is None and self.ahead_budget is not None \
                    and self.ahead_budget.try_acquire(len(chunk)):
                self.ahead.append(chunk)
                self.cond.notify_all()
                return
        # Room in the spool budget is waited for without the lock, which the writer needs to
        # make this channel live; if it does meanwhile, the chunk goes in memory instead.
        reserved = not self.live and self.budget is not None and \
            self.budget.acquire(len(chunk), lambda: self.live)
        with self.cond:
            if self.live:
                if reserved:
                    self.budget.release(len(chunk))  # type: ignore[union-attr]
                while self.queued >= LIVE_BYTES:
                    if self.cancel.is_set():
                        raise Cancelled
                    self.cond.wait(0.2)
                self.queue.append(chunk)
                self.queued += len(chunk)
            else:
                if self.spool is None:
                    # Unlinked from the start (O_TMPFILE): gone with the process, however it ends.
                    self.spool = tempfile.TemporaryFile(dir=self.folder, buffering=0)  # noqa: SIM115
                _pwrite_all(self.spool.fileno(), chunk, self.spooled)
                self.spooled += len(chunk)
            self.cond.notify_all()

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()

    # -- the writer's side ------------------------------------------------------------------

    def chunks(self, check: Callable[[], None]) -> Iterator[bytes]:
        """The part's bytes in order, until its reader has finished; ``check`` raises when
        the export failed elsewhere."""
        while True:
            with self.cond:
                while True:
                    span = None
                    if self.ahead:
                        chunk = self.ahead.popleft()
                        self.ahead_budget.release(len(chunk))  # type: ignore[union-attr]
                        break
                    if self.taken < self.spooled:
                        span = (self.taken, min(COPY_BYTES, self.spooled - self.taken))
                        break
                    if self.queue:
                        chunk = self.queue.popleft()
                        self.queued -= len(chunk)
                        self.cond.notify_all()
                        break
                    if self.done:
                        return
                    self.live = True  # all read ahead is drained: from now on, chunks come live
                    self.cond.wait(0.2)
                    check()
            if span is not None:
                # What is already spooled no longer changes: read it outside the lock.
                chunk = os.pread(self.spool.fileno(), span[1], span[0])
                self.taken += len(chunk)
            yield chunk

    def close(self) -> None:
        """The reader's end: nothing to release (the spool is the writer's to release)."""

    def release(self) -> None:
        """The writer's end: drop what is held (and its share of the budgets)."""
        with self.cond:
            held = sum(len(c) for c in self.ahead)
            self.ahead.clear()
        if held:
            self.ahead_budget.release(held)  # type: ignore[union-attr]
        if self.spool is not None:
            self.spool.close()
            self.spool = None
            if self.budget is not None:
                self.budget.release(self.spooled)


class _TableFile:
    """A table's file in the JSON Lines layout: compressed, hashed, fsynced when finished,
    closed whatever happens."""

    def __init__(self, path: str, compression: str, result: TableResult) -> None:
        self.result = result
        self.digest = TABLE_CHECKSUMS[TABLE_CHECKSUM]()
        self.fh = WritebackFile(path)
        self.out = Compressed(self.fh, compression)

    def write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.out.write(chunk)

    def finish(self) -> None:
        self.result.checksum = self.digest.hexdigest()
        self.out.close()
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


@dataclass
class _Part:
    """A unit of reading: a whole table, or one of the ranges a large table is split into
    (``table`` is then the source's description of that range)."""

    name: str
    table: Table
    index: int = 0
    rows: int = 0
    bytes: int = 0


class _Readers:
    """Reader threads streaming ``parts`` through the sink that ``open_part`` gives, ``jobs``
    at a time, each taking the next part in the order given; tables in ``projections`` are
    read through their projection (the policy's columns and rules). Each table's rows and
    bytes are summed into ``results`` when its last part is done.

    The callers' orders: document order for the document, whose writer takes the parts in
    that order (largest-first spooled all of the benchmark's 1 GB: the writer's first tables
    are small ones that nobody read until the large parts were done; document order is what
    makes the spool budget deadlock-free); largest first for JSON Lines, which has no writer
    to feed, so that the longest table starts at once."""

    def __init__(
        self,
        source: Source,
        parts: Sequence[_Part],
        jobs: int,
        open_part: Callable[[_Part], Any],
        results: dict[str, TableResult],
        progress: Progress | None,
        projections: dict[str, Projection] | None,
        cancel: threading.Event,
    ) -> None:
        self.source = source
        self.open_part = open_part
        self.results = results
        self.progress = progress
        self.projections = projections or {}
        self.cancel = cancel
        self.todo = deque(parts)
        self.pending: dict[str, list[_Part]] = {}
        for part in parts:
            self.pending.setdefault(part.name, []).append(part)
        self.errors: list[BaseException] = []
        self.readers: list[TableReader] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._worker, name=f"sqlsnap-reader-{i}", daemon=True)
                        for i in range(jobs)]
        for th in self.threads:
            th.start()

    def _export_one(self, reader: TableReader, part: _Part) -> None:
        out = self.open_part(part)
        try:
            for chunk, rows in reader.read(part.table, self.cancel, self.projections.get(part.name)):
                out.write(chunk)
                part.rows += rows
                part.bytes += len(chunk)
                if self.progress:
                    self.progress.advance(part.name, rows, len(chunk))
            with self.lock:
                siblings = self.pending[part.name]
                siblings.remove(part)
                last = not siblings
                result = self.results[part.name]
                result.rows += part.rows
                result.bytes += part.bytes
            out.finish()
        finally:
            out.close()
        if last and self.progress:
            self.progress.table_done(part.name, result.rows, result.bytes)

    def _next(self) -> _Part | None:
        with self.lock:
            return self.todo.popleft() if self.todo else None

    def _worker(self) -> None:
        try:
            with self.source.reader() as reader:
                with self.lock:
                    self.readers.append(reader)
                while not self.cancel.is_set() and (part := self._next()) is not None:
                    self._export_one(reader, part)
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            with self.lock:
                self.errors.append(exc)
            self.stop()

    def stop(self) -> None:
        """Cancel every reader (their queries too) without waiting for them."""
        self.cancel.set()
        with self.lock:
            readers = list(self.readers)
        for r in readers:
            r.cancel()

    def check(self) -> None:
        """Raise the first reader's error, if one failed."""
        if self.errors:
            exc = self.errors[0]
            if isinstance(exc, OSError):
                raise os_error(exc, getattr(exc, "filename", None) or "the output") from None
            raise exc

    def wait(self) -> None:
        """Wait for every reader to end (interruptible by Ctrl-C), then raise any error."""
        for th in self.threads:
            while th.is_alive():
                th.join(0.2)
        self.check()

    def abandon(self) -> None:
        self.stop()
        for th in self.threads:
            th.join(10)


def _run_readers(readers_args: dict[str, Any], body: Callable[[_Readers], None]) -> None:
    """Start the readers, run ``body`` (the writer) beside them, and wait for both; Ctrl-C or
    any failure cancels the readers' queries."""
    readers = _Readers(**readers_args)
    try:
        body(readers)
        readers.wait()
    except KeyboardInterrupt:
        readers.abandon()
        raise Interrupted("interrupted; the export was abandoned and no file was left behind") from None
    except BaseException:
        readers.abandon()
        raise


def _size(table: Table) -> int:
    """What to read first: the largest tables (by bytes where the source knows them)."""
    return table.estimated_bytes or table.estimated_rows or 0


def _count_rows(source: Source, tables: Sequence[Table]) -> dict[str, int]:
    """Exact row counts in the snapshot, for the metadata that precedes the rows."""
    try:
        with source.reader() as reader:
            return {t.name: reader.count(t) for t in tables}
    except KeyboardInterrupt:
        raise Interrupted("interrupted; the export was abandoned and no file was left behind") from None


def _check_counts(counted: dict[str, int], results: dict[str, TableResult]) -> None:
    for name, rows in counted.items():
        if results[name].rows != rows:
            raise SnapError(
                f"table {name} changed during the export: {rows:,} rows counted in the snapshot, "
                f"{results[name].rows:,} read; the source did not keep a consistent snapshot, so no "
                "file was written", table=name)


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
    counted: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The metadata object. With ``counted`` (the document, written before its rows) the row
    counts are those and the checksums are left to the document's end; else (JSON Lines,
    whose manifest is written last) both come from ``results``."""
    meta_tables: dict[str, Any] = {}
    rows = counted if counted is not None else {name: r.rows for name, r in results.items()}
    for t in tables:
        r = results[t.name]
        entry: dict[str, Any] = {
            "rows": rows[t.name],
            "columns": [c.to_metadata() for c in t.columns],
            "primary_key": list(t.primary_key),
            "foreign_keys": [fk.to_metadata() for fk in t.foreign_keys],
            "excluded_columns": [],
        }
        if counted is None:
            entry[TABLE_CHECKSUM] = r.checksum
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
        "total_rows": sum(rows[t.name] for t in tables),
        "checksums": {"algorithm": TABLE_CHECKSUM, "location": "end" if counted is not None else "tables"},
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
    channels: dict[str, list[_Channel]],
    readers: _Readers,
    results: dict[str, TableResult],
    recipients: Sequence[Any] = (),
) -> tuple[int, str]:
    """Write ``{"metadata": ..., "data": {...}, "checksums": {...}}`` as the rows arrive: one
    row per line, tables in ``order``, each from its parts' ``channels`` in turn. The
    per-table checksums are computed here, where each table's bytes pass in order (its parts
    are read side by side), so that the reader threads do nothing but drain the server.

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
            # Rows are JSON lines; in the document they are separated by ",\n". The last two
            # bytes written so far are held back: at the table's end they are the ",\n" that
            # must not follow the last row. (Spooled chunks may end inside a row.)
            held = b""
            digest = TABLE_CHECKSUMS[TABLE_CHECKSUM]()
            for channel in channels[table.name]:
                for chunk in channel.chunks(readers.check):
                    digest.update(chunk)
                    piece = chunk.replace(b"\n", b",\n")
                    out.write(held or b"\n")
                    out.write(memoryview(piece)[:-2])
                    held = piece[-2:]
                channel.release()
            results[table.name].checksum = digest.hexdigest()
            if held and held != b",\n":
                raise SnapError(f"table {table.name}: the reader did not end its last row", table=table.name)
            out.write(b"\n]" if held else b"]")
        checksums = {TABLE_CHECKSUM: {t.name: results[t.name].checksum for t in order}}
        out.write(b"\n},\n\"checksums\": " + msgspec.json.encode(checksums) + b"\n}\n")
        out.close()
        if encrypting:
            encrypting.close()
    except BaseException:
        if encrypting:
            encrypting.abort()
        raise
    finally:
        tee.close()
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
        readers_args: dict[str, Any] = dict(source=src, jobs=n_jobs, results=results, progress=progress,
                                            projections=projections, cancel=threading.Event())
        if format == "jsonl":
            folder = AtomicDir(destination)
            try:
                taken: set[str] = {"metadata.json"}
                suffix = ".jsonl" + SUFFIXES[compression]
                for t in order:
                    results[t.name].file = _table_filename(t.name, taken) + suffix

                def open_file(part: _Part) -> _TableFile:
                    result = results[part.name]
                    return _TableFile(os.path.join(folder.tmp, result.file or ""), compression, result)

                # Largest first, so the longest table starts at once and the others fill in.
                parts = [_Part(t.name, t) for t in sorted(order, key=_size, reverse=True)]
                _run_readers(dict(readers_args, parts=parts, open_part=open_file), lambda r: None)
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
            counted = _count_rows(src, order)
            metadata = _metadata(source_info, order, results, excluded, counted=counted,
                                 **metadata_kw)  # type: ignore[arg-type]
            # Spools (tables read ahead of the writer) go beside a local file, on the same disk
            # as the result, else to the temp folder. An encrypted export never spools.
            spool_dir = tempfile.gettempdir() if destination == "-" or is_remote(destination) else \
                os.path.dirname(os.path.abspath(destination))
            may_spool = n_jobs > 1 and not recipients
            # With several readers, large tables are read in parts side by side (the largest
            # table alone was 60% of the work: bench/README.md).
            parts = [_Part(t.name, piece, i) for t in order
                     for i, piece in enumerate(src.split(t, PART_BYTES) if may_spool else [t])]
            channels: dict[str, list[_Channel]] = {t.name: [] for t in order}
            cancel = readers_args["cancel"]
            budget, ahead = _Budget(SPOOL_BYTES, cancel), _Budget(AHEAD_BYTES, cancel)
            for part in parts:
                channels[part.name].append(_Channel(spool_dir, cancel, may_spool, budget, ahead))
            sink: Any = None
            written: tuple[int, str] = (0, "")
            try:
                sink = target.sink()

                def write(readers: _Readers) -> None:
                    nonlocal written
                    written = _write_document(sink, compression, metadata, order, channels, readers,
                                              results, recipients)

                _run_readers(dict(readers_args, parts=parts,  # in document order
                                  open_part=lambda p: channels[p.name][p.index]), write)
                _check_counts(counted, results)
                size, sha256 = written
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
                for chs in channels.values():
                    for ch in chs:
                        ch.release()
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



