"""Reading a snapshot's tables and rows back, in bounded memory: :func:`open_snapshot`.

::

    with open_snapshot("app.json.zst", identities=["key.txt"]) as snap:
        snap.metadata["total_rows"]
        for name, rows in snap.tables():
            for row in rows:          # dicts; raw=True gives each row's JSON bytes
                ...

A snapshot is a document (plain, ``.zst``, ``.gz``, age-encrypted: told by its first
bytes, not its name) or a JSON Lines folder or prefix (``metadata.json`` and one file per
table), on a local path, ``s3://bucket/key`` (``s3_endpoint`` for other S3-compatible
stores), ``memory://name/key`` or ``-`` (standard input, a document). Its metadata is read
when it is opened (a document's head, a folder's manifest); its tables are read once, in
file order, each table's rows before the next table (a table left unfinished is skipped
when the next one is asked for). Memory stays at one block plus the longest row.

The layout is checked as the rows stream (:class:`.reader.DocumentParser`), and each table
ends with the count check of ``verify``: a truncated or damaged file raises
:class:`VerifyError` with its line, never ends a table short. The per-table checksums and
the file's SHA-256 are ``verify``'s to check.

Rows are decoded with every digit kept: integers of any size as ``int``, every other number
as :class:`decimal.Decimal` (``1.10`` stays ``Decimal("1.10")``; a float column's ``1.1`` is
``Decimal("1.1")``: ``float()`` of it is the stored double). Values are otherwise as
docs/format.md writes them (dates as ISO strings, binary as base64...).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from ..errors import NotFoundError, SnapError, UsageError, VerifyError
from ..format import MANIFEST, check_metadata
from ..stores import open_input, open_store
from ..stores.base import Store
from .reader import (
    MAX_METADATA_BYTES,
    CountingReader,
    DocumentParser,
    Event,
    Kind,
    Lines,
    TableSpan,
    check_count,
    plain_stream,
    row_error,
    table_file_events,
)

#: A row as a dict, every non-integer number a Decimal (the module docstring).
_ROW = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


class Snapshot:
    """An open snapshot (:func:`open_snapshot`); a context manager that closes what it
    opened (files, S3 bodies, the decryption thread)."""

    def __init__(self, location: str, layout: str) -> None:
        #: Where it was opened from, as given: what messages name.
        self.location = location
        #: ``"json"`` (a document) or ``"jsonl"`` (a folder or prefix).
        self.layout = layout
        #: ``"none"``, ``"zstd"`` or ``"gzip"`` (of the document; of the last table file read).
        self.compression = "none"
        self.encrypted = False
        #: The metadata (docs/format.md): the document's head, or the folder's manifest.
        self.metadata: dict[str, Any] = {}
        self.closed = False
        self._identities: list[Any] | None = None
        self._raw: Any = None  # the stream open now: the document, or one table's file
        self._decrypting: Any = None
        self._started = False
        self._error: BaseException | None = None
        self._tables_gen: Generator[tuple[str, Iterator[Any]], None, None] | None = None

    # -- reading -------------------------------------------------------------------------

    def tables(self, *, raw: bool = False) -> Iterator[tuple[str, Iterator[Any]]]:
        """``(name, rows)`` for each table, in file order (parents first), once. ``rows``
        yields dicts, or with ``raw=True`` each row's JSON as bytes (without newline or
        comma); it must be read before the next table is asked for (what is left of it is
        then skipped, its count still checked)."""
        self._check_usable()
        if self._started:
            raise UsageError(f"the tables of {self.location} are read once, in file order; open it "
                             "again to read them again", path=self.location)
        self._started = True
        self._tables_gen = self._tables(raw)
        return _Tables(self, self._tables_gen)

    def _tables(self, raw: bool) -> Generator[tuple[str, Iterator[Any]], None, None]:
        sources = self._sources()
        try:
            for name, where, events in sources:
                rows = _Rows(self, name, where, events, raw)
                yield name, rows
                rows.skip()
        finally:
            sources.close()  # now, not when collected: a table file open in it is closed

    def _sources(self) -> Generator[tuple[str, str, Iterator[Event]], None, None]:
        """(table, where its messages point, its events up to its ``TABLE_END``)."""
        raise NotImplementedError

    def _broke(self, exc: BaseException) -> None:
        """Keep why reading stopped: a later read raises it again instead of looking like
        the end (a generator that raised is simply exhausted)."""
        if self._error is None:
            self._error = exc if isinstance(exc, SnapError | OSError) else UsageError(
                f"reading {self.location} stopped ({type(exc).__name__}); open it again to read it",
                path=self.location)

    def _check_usable(self) -> None:
        if self.closed:
            raise UsageError(f"{self.location} was closed; open it again to read it", path=self.location)
        if self._error is not None:
            raise self._error

    def _open_stream(self, raw: Any, where: str) -> Lines:
        """The lines of ``raw`` (now this snapshot's to close) through decryption and
        decompression."""
        self._raw = raw
        counting = CountingReader(raw)
        stream, self._decrypting = plain_stream(counting, counting, where, self._identities, self)
        return Lines(stream)

    # -- closing -------------------------------------------------------------------------

    def _close_stream(self) -> None:
        decrypting, raw = self._decrypting, self._raw
        self._decrypting = self._raw = None
        try:
            if decrypting is not None:
                decrypting.close()  # first: its thread reads from raw
        finally:
            if raw is not None:
                raw.close()

    def close(self) -> None:
        """Close what is open (idempotent); the rows can no longer be read."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._tables_gen is not None:
                self._tables_gen.close()
        finally:
            self._close_stream()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Document(Snapshot):
    def __init__(self, location: str, raw: Any, identities: list[Any] | None) -> None:
        super().__init__(location, "json")
        self._identities = identities
        try:
            self._parser = DocumentParser(self._open_stream(raw, location), location)
            self._events = iter(self._parser)
            next(self._events)  # METADATA, or the parser raises
        except BaseException:
            self._close_stream()
            raise
        self.metadata = self._parser.metadata

    def _sources(self) -> Generator[tuple[str, str, Iterator[Event]], None, None]:
        table, end = Kind.TABLE, Kind.END
        for kind, value, _ in self._events:  # the rows' events are taken by _Rows
            if kind is table:
                yield value, self.location, self._events
            elif kind is end:  # the parser read the whole document and found its layout whole
                return
        self._check_usable()
        raise UsageError(f"reading {self.location} stopped (interrupted); open it again to read it",
                         path=self.location)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._events.close()


class _Folder(Snapshot):
    def __init__(self, location: str, store: Store, prefix: str, manifest: bytes,
                 identities: list[Any] | None) -> None:
        super().__init__(location, "jsonl")
        self._identities = identities
        self._store = store
        self._prefix = prefix
        where = store.url(self._key(MANIFEST))
        try:
            metadata = msgspec.json.decode(manifest)
        except msgspec.DecodeError as exc:
            raise VerifyError(f"{where} is not valid JSON ({exc})", path=where) from None
        self._entries, _ = check_metadata(metadata, where, in_tables=True)
        self.metadata = metadata
        for name, entry in self._entries.items():
            file = entry.get("file")
            if not isinstance(file, str) or not file or os.path.basename(file) != file:
                raise VerifyError(f"{where}: table '{name}' names no file in this folder", path=where,
                                  table=name)

    def _key(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name

    def _sources(self) -> Generator[tuple[str, str, Iterator[Event]], None, None]:
        for name, entry in self._entries.items():
            key = self._key(entry["file"])
            where = self._store.url(key)
            lines = self._open_stream(self._store.open(key), where)
            try:
                yield name, where, table_file_events(lines, where, name)
            finally:
                self._close_stream()


class _Tables:
    """``Snapshot.tables()``: ``(name, rows)`` from the generator, errors kept."""

    def __init__(self, snapshot: Snapshot, gen: Iterator[tuple[str, Iterator[Any]]]) -> None:
        self._snapshot = snapshot
        self._gen = gen

    def __iter__(self) -> _Tables:
        return self

    def __next__(self) -> tuple[str, Iterator[Any]]:
        self._snapshot._check_usable()
        try:
            return next(self._gen)
        except StopIteration:
            raise
        except BaseException as exc:
            self._snapshot._broke(exc)
            raise


#: Bound once: an enum member's lookup costs 170 ns on Python 3.11 (see :class:`Kind`).
_ROW_EVENT = Kind.ROW


class _Rows:
    """One table's rows, pulled from its events; ends with the count check. Errors stick:
    once the stream broke, no later read may look like the end of a whole table."""

    def __init__(self, snapshot: Snapshot, name: str, where: str, events: Iterator[Event], raw: bool) -> None:
        self._snapshot = snapshot
        self.name = name
        self._where = where
        self._events = events
        self._decode = None if raw else _ROW.decode
        self._expected = snapshot.metadata["tables"][name].get("rows")
        self.rows = 0
        self._done = False
        self._skipped = False

    def __iter__(self) -> _Rows:
        return self

    def __next__(self) -> Any:
        snapshot = self._snapshot
        if self._done or snapshot.closed or snapshot._error is not None:
            self._refuse()
        try:
            kind, value, line = next(self._events)
        except StopIteration:
            raise self._interrupted() from None
        except BaseException as exc:
            snapshot._broke(exc)
            raise
        if kind is not _ROW_EVENT:
            self._end(value)
            raise StopIteration
        self.rows += 1
        if self._decode is None:
            return value
        try:
            return self._decode(value)
        except msgspec.DecodeError as exc:
            error = row_error(self._where, self.name, line, self.rows, exc)
        snapshot._broke(error)
        raise error

    def _refuse(self) -> None:
        """Why the table gives no more rows: it ended (StopIteration), it was left for the
        next table, the snapshot was closed or broke."""
        if self._skipped:
            raise UsageError(f"the rows of table '{self.name}' were read after the next table was "
                             "asked for; read each table's rows before the next table",
                             path=self._snapshot.location, table=self.name)
        if self._done:
            raise StopIteration
        self._snapshot._check_usable()

    def _interrupted(self) -> UsageError:
        # The parser stopped at an exception that is not sqlsnap's (Ctrl-C), which was caught.
        return UsageError(f"reading {self._where} stopped in table '{self.name}' (interrupted); open it "
                          "again to read it", path=self._where, table=self.name)

    def _end(self, span: TableSpan) -> None:
        self._done = True
        try:
            check_count(span, self._expected, self._where)
        except VerifyError as exc:
            self._snapshot._broke(exc)
            raise

    def skip(self) -> None:
        """Read past what is left of the table (its count still checked)."""
        if self._done:
            return
        self._skipped = True
        self._snapshot._check_usable()
        try:
            for kind, value, _ in self._events:
                if kind is not _ROW_EVENT:
                    self._end(value)
                    return
                self.rows += 1
        except BaseException as exc:
            self._snapshot._broke(exc)
            raise
        raise self._interrupted()


def _load_identities(identities: Sequence[Any]) -> list[Any] | None:
    """Identity files (paths) loaded; identities already loaded (pyrage's) kept as they are."""
    if not identities:
        return None
    files = [os.fspath(i) for i in identities if isinstance(i, str | os.PathLike)]
    keys: list[Any] = []
    if files:
        from ..crypto import load_identities

        keys = load_identities(files)
    return keys + [i for i in identities if not isinstance(i, str | os.PathLike)]


def open_snapshot(location: str, *, identities: Sequence[Any] = (),
                  s3_endpoint: str | None = None) -> Snapshot:
    """Open the snapshot at ``location`` (see the module docstring) and read its metadata.

    ``identities``: age identity files (as ``age-keygen`` writes them, or OpenSSH private
    keys), or identities already loaded, for an encrypted document. Raises
    :class:`NotFoundError` when nothing is there, :class:`VerifyError` when what is there is
    not a sqlsnap snapshot, :class:`UsageError` for an encrypted one without a matching key.
    """
    keys = _load_identities(identities)
    if location == "-":
        return _Document(location, open_input(location), keys)
    store, key = open_store(location, s3_endpoint=s3_endpoint)
    if key and not key.endswith("/"):
        try:
            raw = store.open(key)
        except NotFoundError as missing:
            # No object there: a JSON Lines prefix (S3, memory), or nothing at all.
            manifest = store.read_small(f"{key}/{MANIFEST}", MAX_METADATA_BYTES)
            if manifest is None:
                raise missing from None
            return _Folder(location, store, key, manifest, keys)
        return _Document(location, raw, keys)
    prefix = key.rstrip("/")
    manifest = store.read_small(f"{prefix}/{MANIFEST}" if prefix else MANIFEST, MAX_METADATA_BYTES)
    if manifest is None:
        raise VerifyError(f"{location} has no {MANIFEST}; not a sqlsnap JSON Lines folder", path=location)
    return _Folder(location, store, prefix, manifest, keys)
