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

import getpass
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..codecs import SUFFIXES, compression_for
from ..errors import Interrupted, SnapError, UsageError, os_error
from ..format import JSONL_SUFFIX, MANIFEST, build_metadata, default_name, encode_metadata, table_filename
from ..model import Table
from ..plan import Plan, build_plan, plan_options
from ..policy import Policy
from ..policy.transforms import compile_projections
from ..sources import Source, make_source
from ..stores import expand_placeholders, is_remote, plain_name, prepare_destination
from ..stores.file import AtomicDir
from ..urls import parse_url
from ..writers.document import write_document
from ..writers.jsonl import TableFile
from . import channel
from .channel import Budget, Channel
from .readers import Part, Readers, run_readers, size_of
from .result import ExportResult, Progress, TableResult

FORMATS = ("json", "jsonl")
#: Default parallelism: one reader per core, at most 4. Two connections sharing a snapshot
#: reached 0.65x of one on this 2-core machine (ECOSYSTEM.md section 13); more readers than
#: cores only make the server processes compete.
DEFAULT_JOBS = max(1, min(4, os.cpu_count() or 1))


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
        from ..crypto import SUFFIX as AGE_SUFFIX
        from ..crypto import load_recipients

        recipients = load_recipients(encrypt_to, encrypt_to_file)
    if destination is None:
        destination = default_name(url.database, when, format, compress)
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
                taken: set[str] = {MANIFEST}
                suffix = JSONL_SUFFIX + SUFFIXES[compression]
                for t in order:
                    results[t.name].file = table_filename(t.name, taken) + suffix

                def open_file(part: Part) -> TableFile:
                    result = results[part.name]
                    return TableFile(os.path.join(folder.tmp, result.file or ""), compression, result)

                # Largest first, so the longest table starts at once and the others fill in.
                parts = [Part(t.name, t) for t in sorted(order, key=size_of, reverse=True)]
                run_readers(dict(readers_args, parts=parts, open_part=open_file), lambda r: None)
                metadata = build_metadata(source_info, order, results, excluded, **metadata_kw)  # type: ignore[arg-type]
                manifest = os.path.join(folder.tmp, MANIFEST)
                with open(manifest, "xb") as fh:
                    fh.write(encode_metadata(metadata) + b"\n")
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
            metadata = build_metadata(source_info, order, results, excluded, counted=counted,
                                 **metadata_kw)  # type: ignore[arg-type]
            # Spools (tables read ahead of the writer) go beside a local file, on the same disk
            # as the result, else to the temp folder. An encrypted export never spools.
            spool_dir = tempfile.gettempdir() if destination == "-" or is_remote(destination) else \
                os.path.dirname(os.path.abspath(destination))
            may_spool = n_jobs > 1 and not recipients
            # With several readers, large tables are read in parts side by side (the largest
            # table alone was 60% of the work: bench/README.md).
            parts = [Part(t.name, piece, i) for t in order
                     for i, piece in enumerate(src.split(t, channel.PART_BYTES) if may_spool else [t])]
            channels: dict[str, list[Channel]] = {t.name: [] for t in order}
            cancel = readers_args["cancel"]
            budget, ahead = Budget(channel.SPOOL_BYTES, cancel), Budget(channel.AHEAD_BYTES, cancel)
            for part in parts:
                channels[part.name].append(Channel(spool_dir, cancel, may_spool, budget, ahead))
            sink: Any = None
            written: tuple[int, str] = (0, "")
            try:
                sink = target.sink()

                def write(readers: Readers) -> None:
                    nonlocal written
                    written = write_document(sink, compression, metadata, order, channels, readers.check,
                                              results, recipients)

                run_readers(dict(readers_args, parts=parts,  # in document order
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


def plan(
    source: str,
    *,
    schemas: Sequence[str] | None = None,
    tables: Sequence[str] | None = None,
    exclude_tables: Sequence[str] | None = None,
    exclude_columns: Sequence[str] | None = None,
    include_secrets: Sequence[str] | None = None,
    anonymize: bool = False,
    policy: str | Policy | None = None,
    hash_key: bytes | str | None = None,
    hash_key_file: str | None = None,
) -> Plan:
    """The plan ``export()`` would follow with the same arguments, without exporting: the
    source is opened only to read its catalog. Raises the errors ``export()`` would."""
    url = parse_url(source)
    options, _ = plan_options(
        dialect=url.dialect, tables=tables, exclude_tables=exclude_tables, exclude_columns=exclude_columns,
        include_secrets=include_secrets, anonymize=anonymize, policy=policy, hash_key=hash_key,
        hash_key_file=hash_key_file)
    with make_source(url) as src:
        info = src.info()
        reflected = src.list_tables(schemas)
    return build_plan(reflected, options, info)
