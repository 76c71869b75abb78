"""The export: one snapshot, tables read side by side, one document (or folder) written.

Flow (docs/architecture.md): source -> plan -> policy -> writer -> codecs -> checksum tee -> store.

:class:`Export` runs in phases, each of which can fail before the next one touches anything:

1. **check** the options, the policy and the key (no connection yet);
2. **destination**: its name (placeholders, default name), codec and store are checked, so a
   bad ``-o`` fails before the database is read;
3. **snapshot and plan**: the source's consistent snapshot is opened, its catalog read, the
   plan built (``on_plan`` sees it before any row is read) and the policy compiled;
4. **read and write**: readers drain the snapshot while the writer writes;
5. **commit**: the file appears under its final name only now, then its checksum file.

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

A caller stops a running export from another thread by setting the ``cancel`` event it
passed: the readers' queries are cancelled, nothing is left under the final name, and the
export raises :class:`sqlsnap.errors.Interrupted`, as after Ctrl-C.
"""

from __future__ import annotations

import getpass
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import msgspec

from ..codecs import SUFFIXES, compression_for
from ..errors import Interrupted, OutputError, SnapError, UsageError, os_error
from ..format import (
    JSONL_SUFFIX,
    MANIFEST,
    SIDECAR_SUFFIX,
    build_metadata,
    default_name,
    encode_metadata,
    sidecar_text,
    table_filename,
)
from ..model import Table
from ..options import FORMATS, ExportOptions
from ..plan import Plan, PlanOptions, build_plan, plan_options
from ..plan.request import OutputColumn, Projection, ReadRequest
from ..plan.segment import MAX_LISTED_KEYS
from ..policy import HashKey
from ..policy.transforms import compile_projections
from ..sources import Source, make_source
from ..stores import SCHEMES as STORE_SCHEMES
from ..stores import Store, database_label, escape_value, expand_placeholders, open_store, plain_name
from ..stores.file import FileStore
from ..urls import SourceURL, parse_url
from ..writers.document import write_document
from ..writers.jsonl import TableFile
from . import channel
from .channel import Budget, Channel
from .readers import CANCELLED, Readers, Task, run_readers, size_of
from .result import ExportResult, Progress, TableResult

__all__ = ["DEFAULT_JOBS", "FORMATS", "Export", "export", "plan"]

#: Default parallelism: one reader per core, at most 4. Two connections sharing a snapshot
#: reached 0.65x of one on this 2-core machine; more readers than cores only make the server
#: processes compete (bench/README.md).
DEFAULT_JOBS = max(1, min(4, os.cpu_count() or 1))


def _count_rows(source: Source, requests: Sequence[ReadRequest]) -> dict[str, int]:
    """Exact row counts in the snapshot, for the metadata that precedes the rows."""
    try:
        with source.reader() as reader:
            return {r.name: reader.count(r) for r in requests}
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {CANCELLED}") from None


def _requests(the_plan: Plan, tables: Mapping[str, Table],
              projections: Mapping[str, Projection | None]) -> dict[str, ReadRequest]:
    """What each table's reader reads: its row filter, or in a closed segment its rows in the
    closure (the seed tables' filters are then seeds, not limits: a seed row's children in its
    own table, through a self-reference, are in the segment too)."""
    seg = the_plan.segment
    return {t.name: ReadRequest(tables[t.name], projections.get(t.name), t.row_filter) if seg is None else
            ReadRequest(tables[t.name], projections.get(t.name), segment=seg.read(t.name))
            if seg.reads(t.name) else ReadRequest(tables[t.name], projections.get(t.name))
            for t in the_plan.tables}


def _measure_segment(source: Source, the_plan: Plan, requests: Mapping[str, ReadRequest]) -> None:
    """Fill the plan's segment with what only the snapshot knows: rows per table, seed rows,
    and the rows reached only as parents in tables also reached as children (another
    tenant's), with their keys (the first MAX_LISTED_KEYS)."""
    seg = the_plan.segment
    if seg is None:
        return
    try:
        with source.reader() as reader:
            # One query counts every table keyed by its primary key, and its rows reached only
            # as parents; other tables (and sources without it) are counted one by one.
            stats = reader.segment_counts(seg.closure) or {}
            by_node: dict[str, tuple[int, int]] = {
                t.name: stats.get(i, (0, 0)) for i, t in enumerate(seg.closure.tables)
                if stats and list(seg.closure.keys[i]) == list(t.primary_key)}
            seg.rows = {name: by_node[name][0] if name in by_node else reader.count(req)
                        for name, req in requests.items()}
            seg.seeds = {t.name: reader.count(ReadRequest(t, segment=seg.read(t.name, seeds_only=True)))
                         for i, _, _ in seg.closure.seeds for t in [seg.closure.tables[i]]}
            seg.cross_parents = {}
            for name in sorted(seg.down):
                table = requests[name].table
                only = ReadRequest(table, segment=seg.read(name, parents_only=True))
                n = by_node[name][1] if name in by_node else reader.count(only)
                if not n:
                    continue
                key = seg.closure.keys[seg.closure.index(name)]
                names = [c.name for c in table.columns]
                keys_only = Projection(tuple(OutputColumn(c, names.index(c)) for c in key))
                listed: list[list[Any]] = []
                never = threading.Event()
                for chunk, _rows in reader.read(replace(only, projection=keys_only), never):
                    for line in chunk.splitlines():
                        if len(listed) < MAX_LISTED_KEYS:
                            row = msgspec.json.decode(line)
                            listed.append([row[c] for c in key])
                seg.cross_parents[name] = {"rows": n, "keys": listed}
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {CANCELLED}") from None


def _check_counts(counted: dict[str, int], results: dict[str, TableResult]) -> None:
    for name, rows in counted.items():
        if results[name].rows != rows:
            raise SnapError(
                f"table {name} changed during the export: {rows:,} rows counted in the snapshot, "
                f"{results[name].rows:,} read; the source did not keep a consistent snapshot, so no "
                "file was written", table=name)


def _plan_options(options: ExportOptions, dialect: str) -> tuple[PlanOptions, HashKey | None]:
    p = options.policy
    return plan_options(
        dialect=dialect, tables=options.tables, exclude_tables=options.exclude_tables,
        exclude_columns=p.exclude_columns, include_secrets=p.include_secrets, anonymize=p.anonymize,
        policy=p.policy, hash_key=p.hash_key, hash_key_file=p.hash_key_file, where=options.segment.where,
        closure=options.segment.closure, since=options.segment.since, until=options.segment.until,
        date_columns=options.segment.date_columns, closed=options.segment.closed,
        sample=options.segment.sample, limit=options.segment.limit, seed=options.segment.seed,
        segment_file=options.segment.segment_file)


def _open_source(url: SourceURL, options: ExportOptions, readers: int | None = None) -> Source:
    src = make_source(url)
    if not options.server_json and hasattr(src, "server_json"):
        src.server_json = False
    if not options.binary_copy and hasattr(src, "binary_copy"):
        src.binary_copy = False
    if hasattr(src, "lock_timeout"):
        src.lock_timeout = options.lock_timeout
    src.keep_closure = options.segment.closes
    # A source opens its readers' connections with its snapshot: no more than will read.
    src.max_readers = max(1, min(src.max_readers, readers or options.jobs or DEFAULT_JOBS))
    return src


def _check_suffix(name: str | None, fmt: str, compression: str) -> None:
    """Refuse a name whose suffix says another content than the one asked for (it was
    written silently: a zstd file named .gz, a folder named .json)."""
    if not name:
        return
    base = name.rstrip("/").lower()
    implied = compression_for(None, base)
    if implied != "none" and implied != compression:
        raise UsageError(f"the output name ends in {SUFFIXES[implied]} but --compress {compression} was "
                         f"asked for; name it ...{SUFFIXES[compression] or '.json'} or drop --compress")
    if fmt == "jsonl" and base.endswith((".json", ".json.zst", ".json.gz")):
        raise UsageError("--format jsonl writes a folder, but the output name ends like a file; give a "
                         "folder name (e.g. -o snapshot/) or use --format json")


class Export:
    """One export of ``options``; :meth:`run` does it once. ``cancel``, when given, is an
    event another thread may set to stop it (see the module's docstring)."""

    def __init__(self, options: ExportOptions, *, progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.options = options
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.started = time.monotonic()
        self.when = datetime.now(UTC).replace(microsecond=0)
        self.notices: list[str] = []

    def _check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Interrupted(f"cancelled; {CANCELLED}")

    # -- 1 and 2: check, destination -----------------------------------------------------------

    def _destination(self, url: SourceURL) -> tuple[str, str, Store, str, list[Any]]:
        """(destination, compression, store, key in the store, age recipients), checked before
        the database is read."""
        o = self.options
        recipients: list[Any] = []
        if o.encrypt_to or o.encrypt_to_file:
            from ..crypto import load_recipients

            recipients = load_recipients(o.encrypt_to, o.encrypt_to_file)
        destination = o.destination
        label = database_label(url.dialect, url.database)
        if destination is None:
            destination = default_name(escape_value(label), self.when, o.format, o.compress)
            if recipients and o.format == "json":
                from ..crypto import SUFFIX as AGE_SUFFIX

                destination += AGE_SUFFIX
        destination = expand_placeholders(destination, database=label, when=self.when,
                                          environment=o.environment, export_type=o.export_type)
        if destination == "-" and o.format == "jsonl":
            raise UsageError("JSON Lines output is a folder; give it with -o FOLDER")
        if o.format == "jsonl" and recipients:
            raise UsageError("--encrypt-to works with --format json only; use --format json for an "
                             "encrypted snapshot")
        if not recipients and destination.lower().endswith(".age"):
            raise UsageError("the output name ends in .age but no recipient was given; add --encrypt-to "
                             "age1... or --encrypt-to-file FILE")
        if recipients and destination != "-" and not destination.lower().endswith(".age"):
            # Refused like the other names that say another content (_check_suffix), not
            # corrected: the name given is the one a script or a schedule looks for next.
            raise UsageError(f"--encrypt-to writes an age-encrypted file, but the output name does not end "
                             f"in .age; name it {destination.rstrip('/').rsplit('/', 1)[-1]}.age or leave "
                             "out --encrypt-to")
        named = None if destination == "-" else plain_name(destination)
        compression = compression_for(o.compress, named)
        _check_suffix(named, o.format, compression)
        scheme = destination.split("://", 1)[0].lower() if "://" in destination else ""
        if scheme and scheme not in STORE_SCHEMES:
            raise UsageError(f"unsupported destination '{scheme}://'; use a file path, '-', s3://bucket/key "
                             "or memory://name/key")
        store, key = open_store(destination, s3_endpoint=o.s3_endpoint)
        if o.format == "json":
            store.check_object_name(key)
            if store.scheme != "stdout":
                store.check_object_name(key + SIDECAR_SUFFIX)
        elif store.exists(key):
            raise OutputError(f"{store.url(key)} already exists; remove it or choose another folder with -o",
                              path=store.url(key))
        store.check_writable(key)
        if o.format == "json" and store.scheme != "stdout" and not o.force and store.exists(key):
            raise OutputError(f"{store.url(key)} already exists; give --force to replace it, or "
                              "choose another name with -o (e.g. with {timestamp})", path=store.url(key))
        for path in store.remove_stale(key.rstrip("/")):
            self.notices.append(f"removed {path}, a temporary left by an export that was killed")
        return destination, compression, store, key, recipients

    # -- the whole export ----------------------------------------------------------------------

    def run(self, on_plan: Callable[[Plan], None] | None = None) -> ExportResult:
        o = self.options
        o.check()
        url = parse_url(o.source)
        # The policy file, patterns and hash key are checked before connecting.
        plan_opts, key = _plan_options(o, url.dialect)
        destination, compression, store, store_key, recipients = self._destination(url)
        self._check_cancelled()
        with _open_source(url, o) as src:
            source_info = src.info()
            reflected = {t.name: t for t in src.list_tables(o.schemas)}
            the_plan = build_plan(list(reflected.values()), plan_opts, source_info)
            order = [reflected[t.name] for t in the_plan.tables]
            projections = compile_projections(the_plan, reflected, key, url.dialect)
            requests = _requests(the_plan, reflected, projections)
            _measure_segment(src, the_plan, requests)
            if on_plan is not None:  # before any row is read: the CLI prints its warnings here
                on_plan(the_plan)
            self._check_cancelled()
            results = {t.name: TableResult(t.name) for t in order}
            n_jobs = max(1, min(o.jobs or DEFAULT_JOBS, src.max_readers, len(order) or 1))
            if self.progress:
                self.progress.start(order)
            run = _Run(self, src, the_plan, order, requests, results, n_jobs, source_info, store, store_key,
                       compression, recipients)
            self.notices += getattr(src, "notices", [])
            if o.format == "jsonl":
                metadata, size, sha256, checksum_file = run.jsonl()
            else:
                metadata, size, sha256, checksum_file = run.document()
        if self.progress:
            self.progress.finish()
        return ExportResult(
            path=destination,
            format=o.format,
            compression=compression,
            tables=results,
            bytes=size,
            sha256=sha256,
            seconds=time.monotonic() - self.started,
            metadata=metadata,
            checksum_file=checksum_file,
            encrypted=bool(recipients),
            plan=the_plan,
            notices=self.notices,
        )


class _Run:
    """Phases 4 and 5 of one export, for each layout: its readers, its writer, its commit."""

    def __init__(self, job: Export, src: Source, the_plan: Plan, order: list[Table],
                 requests: dict[str, ReadRequest], results: dict[str, TableResult], n_jobs: int,
                 source_info: dict[str, Any], store: Store, key: str, compression: str,
                 recipients: list[Any]) -> None:
        self.job, self.src, self.plan, self.order = job, src, the_plan, order
        self.requests, self.results, self.n_jobs = requests, results, n_jobs
        self.source_info, self.store, self.key, self.compression = source_info, store, key, compression
        self.recipients = recipients
        #: Set to stop the readers: by them on a failure, by the writer on Ctrl-C.
        self.stop = threading.Event()

    def _metadata(self, counted: dict[str, int] | None = None) -> dict[str, Any]:
        o = self.job.options
        return build_metadata(
            self.source_info, self.order, self.results, [e.name for e in self.plan.excluded_tables],
            when=self.job.when, exported_by=o.exported_by or getpass.getuser(), environment=o.environment,
            fmt=o.format, plan=self.plan, counted=counted)

    def _readers(self, parts: list[Task], open_part: Callable[[Task], Any]) -> dict[str, Any]:
        return dict(source=self.src, jobs=self.n_jobs, results=self.results, progress=self.job.progress,
                    cancel=self.stop, requested=self.job.cancel, parts=parts, open_part=open_part)

    def jsonl(self) -> tuple[dict[str, Any], int, None, None]:
        """A folder (or prefix) of ``<table>.jsonl`` files and the manifest, written as one
        batch of the store: nothing of it appears before all of it is written, the manifest
        last."""
        where = self.store.url(self.key)
        batch = self.store.batch(self.key)
        files: list[TableFile] = []
        try:
            taken: set[str] = {MANIFEST}
            suffix = JSONL_SUFFIX + SUFFIXES[self.compression]
            for t in self.order:
                self.results[t.name].file = table_filename(t.name, taken) + suffix

            def open_file(part: Task) -> TableFile:
                result = self.results[part.name]
                files.append(TableFile(batch.create(result.file or ""), self.compression, result))
                return files[-1]

            # Largest first, so the longest table starts at once and the others fill in.
            parts = [Task(self.requests[t.name]) for t in sorted(self.order, key=size_of, reverse=True)]
            run_readers(self._readers(parts, open_file), lambda r: None)
            metadata = self._metadata()
            manifest = batch.create(MANIFEST)
            manifest.write(encode_metadata(metadata) + b"\n")
            manifest.commit()
            self.job._check_cancelled()
            batch.commit()
        except OSError as exc:
            self._abort(batch)
            raise os_error(exc, where) from None
        except BaseException:
            self._abort(batch)
            raise
        return metadata, sum(f.upload.bytes for f in files) + manifest.bytes, None, None

    def document(self) -> tuple[dict[str, Any], int, str, str | None]:
        """One document, written as the rows arrive, then committed with its checksum file."""
        seg = self.plan.segment
        # A segment's rows were counted in this snapshot already (_measure_segment): each count
        # evaluates the closure again.
        counted = dict(seg.rows) if seg is not None and seg.rows is not None else \
            _count_rows(self.src, [self.requests[t.name] for t in self.order])
        self.job._check_cancelled()
        metadata = self._metadata(counted)
        # Spools (tables read ahead of the writer) go beside a local file, on the same disk
        # as the result, else to the temp folder. An encrypted export never spools.
        spool_dir = os.path.dirname(os.path.abspath(self.store.path(self.key))) \
            if isinstance(self.store, FileStore) else tempfile.gettempdir()
        temporary = not isinstance(self.store, FileStore)
        may_spool = self.n_jobs > 1 and not self.recipients
        # With several readers, large tables are read in parts side by side (the largest
        # table alone was 60% of the work: bench/README.md).
        parts: list[Task] = []
        for t in self.order:
            request = self.requests[t.name]
            # A segment's table is read whole: each part would evaluate the closure again.
            ranges = self.src.split(t, channel.PART_BYTES) if may_spool and request.segment is None else []
            parts += [Task(replace(request, part=r), r.index) for r in ranges] or [Task(request)]
        channels: dict[str, list[Channel]] = {t.name: [] for t in self.order}
        budget, ahead = Budget(channel.SPOOL_BYTES, self.stop), Budget(channel.AHEAD_BYTES, self.stop)
        for part in parts:
            channels[part.name].append(Channel(spool_dir, self.stop, may_spool, budget, ahead, temporary))
        upload: Any = None
        written: tuple[int, str] = (0, "")
        where = self.store.url(self.key)
        try:
            upload = self.store.create(self.key)

            def write(readers: Readers) -> None:
                nonlocal written
                written = write_document(upload, self.compression, metadata, self.order, channels,
                                         readers.check, self.results, self.recipients)

            # In document order: the writer takes the parts in that order.
            run_readers(self._readers(parts, lambda p: channels[p.name][p.index]), write)
            _check_counts(counted, self.results)
            size, sha256 = written
            self.job._check_cancelled()
            checksum_file = self._commit(upload, sha256)
        except OSError as exc:
            if upload:
                self._abort(upload)
            raise os_error(exc, where) from None
        except BaseException:
            if upload:
                self._abort(upload)
            raise
        finally:
            for chs in channels.values():
                for ch in chs:
                    ch.release()
        return metadata, size, sha256, checksum_file


    def _abort(self, unfinished: Any) -> None:
        """Remove what an unfinished write left. Locally with Ctrl-C held: a second Ctrl-C
        stopped the removal half-way and left the hidden folder. Elsewhere (S3) the abort may
        retry for a while, and Ctrl-C stops it at once and says what is left (stores/s3.py)."""
        if isinstance(self.store, FileStore):
            with _signals_held():
                unfinished.abort()
        else:
            unfinished.abort()

    def _commit(self, upload: Any, sha256: str) -> str | None:
        """The commit point: a data file never stands without its checksum file.

        A local file: the checksum file is written first, then the data file renamed into
        place; when the checksum file cannot be written the data file is never renamed (the
        caller's abort removes its temporary), when the rename fails the new checksum file is
        removed again. Other stores (S3) have no rename: the object is completed first (so that
        its own upload's errors come first), then the checksum file written; when that fails
        the object is deleted again, and the message says so."""
        if self.store.scheme == "stdout":
            upload.commit()
            return None
        checksum_key = self.key + SIDECAR_SUFFIX
        sidecar = sidecar_text(sha256, self.key)
        if isinstance(self.store, FileStore):
            with _signals_held():  # a small write and a rename: see _signals_held
                self.store.put(checksum_key, sidecar)
                try:
                    upload.commit()
                except BaseException:
                    try:
                        self.store.delete([checksum_key])
                    except (SnapError, OSError):
                        pass
                    raise
            return self.store.url(checksum_key)
        # Not held: completing an upload may take long (its last parts, retries), and Ctrl-C
        # must stop it (the upload is then aborted). Held from the moment the object exists
        # (but for the few bytecodes between the two lines).
        upload.commit()
        with _signals_held():
            self._sidecar_or_delete(checksum_key, sidecar)
        return self.store.url(checksum_key)

    def _sidecar_or_delete(self, checksum_key: str, sidecar: bytes) -> None:
        try:
            self.store.put(checksum_key, sidecar)
        except BaseException as exc:
            try:
                self.store.delete([self.key])
                note = (f"{self.store.url(self.key)} was deleted again, as its checksum file could not be "
                        "written")
            except (SnapError, OSError):
                note = (f"{self.store.url(self.key)} is left without its checksum file and could not be "
                        "deleted: delete it")
            if isinstance(exc, SnapError):
                exc.message = f"{exc.message}; {note}"
            raise


@contextmanager
def _signals_held() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM wait while the commit runs (a rename and a small write): an
    interrupt then either came before the commit point (nothing is left) or after it (the
    snapshot is complete, and the export ends as a success), never half-way."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got  # signals are handled in the main thread only
        return
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in held}
    for s in held:
        signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _options(source: str | ExportOptions, destination: str | None, kwargs: dict[str, Any]) -> ExportOptions:
    if isinstance(source, ExportOptions):
        if destination is not None or kwargs:
            raise TypeError("give either ExportOptions or a source URL with keyword arguments, not both")
        return source
    return ExportOptions.from_kwargs(source, destination, **kwargs)


def export(
    source: str | ExportOptions,
    destination: str | None = None,
    *,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> ExportResult:
    """Export every table of ``source`` (a database URL, or a whole :class:`ExportOptions`)
    to ``destination``; the keyword arguments are the fields of :class:`ExportOptions` and
    :class:`sqlsnap.options.PolicyOptions`, and ``where`` (a
    :class:`sqlsnap.plan.filters.RowFilter` per table name).

    What leaves the database follows the plan that :func:`sqlsnap.plan` returns for the same
    arguments (docs/policy.md): secret-looking columns are left out unless named in
    ``include_secrets``; ``exclude_columns`` takes ``TABLE.COLUMN`` globs; ``anonymize``
    applies the PII preset; ``policy`` is a policy file (or a loaded
    :class:`sqlsnap.policy.Policy`); ``hash_key`` / ``hash_key_file`` / ``$SQLSNAP_HASH_KEY``
    give the key of hash, fake and shift-dates. ``on_plan`` is called with the plan before
    any row is read. ``cancel``: an event another thread may set to stop the export.

    ``destination`` is a file path (a folder for ``format="jsonl"``), ``s3://bucket/key``,
    ``"-"`` for standard output, or None for ``<database>-export-<UTC time>.json`` in the
    current folder. It may hold ``{database}``, ``{timestamp}``, ``{environment}`` and
    ``{export_type}``. ``encrypt_to`` (age or SSH public keys) and ``encrypt_to_file``
    (recipients files) encrypt the document with age; ``s3_endpoint`` reaches S3-compatible
    stores other than AWS. A file or object gets a ``<name>.sha256`` checksum file beside it.
    Raises :class:`sqlsnap.SnapError` subclasses with one-line messages.
    """
    job = Export(_options(source, destination, options), progress=progress, cancel=cancel)
    return job.run(on_plan)


def plan(source: str | ExportOptions, **options: Any) -> Plan:
    """The plan ``export()`` would follow with the same arguments, without exporting: the
    source is opened only to read its catalog, never a row. Raises the errors ``export()``
    would (but does not check the destination)."""
    opts = _options(source, None, options)
    opts.check()
    url = parse_url(opts.source)
    plan_opts, _ = _plan_options(opts, url.dialect)
    with _open_source(url, opts, readers=1) as src:
        info = src.info()
        reflected = src.list_tables(opts.schemas)
        the_plan = build_plan(reflected, plan_opts, info)
        # A closed segment's rows per table are counted in the snapshot: the admin reviews
        # how much each table brings before exporting (the catalog alone cannot tell).
        _measure_segment(src, the_plan, _requests(the_plan, {t.name: t for t in reflected}, {}))
    return the_plan
