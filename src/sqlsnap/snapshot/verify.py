"""``sqlsnap verify``: prove that a snapshot is whole and matches its metadata.

The file is streamed once, in constant memory (one block plus the longest row), through the
same layers that wrote it, in reverse (:mod:`.reader`): storage -> SHA-256 of the bytes as
stored -> age decryption (with ``identities``) -> decompression (zstd or gzip, told by the
magic bytes) -> lines -> the layout's events. Checked, stopping at the first problem with
its table and line:

- the layout of docs/format.md, exactly (by :class:`.reader.DocumentParser`): metadata
  first, ``"data": {``, each table's ``"name": [`` line, one row per line, ``]``, ``},``,
  the ``"checksums"`` line, ``}`` and the end of the file; every table of the metadata is
  there, no other, none twice;
- every row line is one valid JSON object;
- per table, the row count against ``metadata.tables[name].rows`` and the checksum of the
  rows (as JSON lines; the algorithm ``metadata.checksums`` names) against the document's
  closing ``"checksums"`` member (a JSON Lines folder: ``metadata.tables[name].xxh128``);
  ``total_rows`` and ``total_tables``;
- the file's SHA-256 against ``<name>.sha256`` when that file exists.

With ``integrity=True`` every foreign-key value is also looked up among the parent table's
rows in the same snapshot; the dangling ones are listed (this keeps the referenced keys in
memory: about 100 bytes a key).

A JSON Lines folder is checked the same way, table file by table file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..errors import SnapError, UsageError, VerifyError
from ..format import CHECKSUM_NAMES, MANIFEST, SNAPSHOT_NAME, TABLE_CHECKSUMS, check_metadata
from ..stores import is_s3, open_input, open_store, read_sidecar
from ..stores.base import Store
from .integrity import Dangling, ForeignKeys
from .reader import (
    MAX_METADATA_BYTES,
    ROW_START,
    DocumentParser,
    HashingReader,
    Kind,
    Lines,
    Prefixed,
    TableSpan,
    check_count,
    plain_stream,
    read_head,
    row_error,
    table_file_events,
)

#: Dangling foreign-key values listed one by one; beyond, only counted.
MAX_LISTED = 1000


@dataclass
class VerifyResult:
    """What ``verify`` proved. ``ok`` is False only for dangling foreign keys (other problems
    raise :class:`VerifyError`)."""

    path: str
    layout: str = "json"
    compression: str = "none"
    encrypted: bool = False
    #: False when an encrypted file was checked against its checksum file only.
    content_checked: bool = True
    #: SHA-256 of the file as stored (None for a folder).
    sha256: str | None = None
    checksum_file: str | None = None
    tables: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    integrity_checked: bool = False
    dangling: list[Dangling] = field(default_factory=list)
    dangling_total: int = 0

    @property
    def total_rows(self) -> int:
        return sum(self.tables.values())

    @property
    def ok(self) -> bool:
        return self.dangling_total == 0

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path, "ok": self.ok, "layout": self.layout, "compression": self.compression,
            "encrypted": self.encrypted, "content_checked": self.content_checked, "sha256": self.sha256,
            "checksum_file": self.checksum_file, "tables": len(self.tables), "rows": self.total_rows,
            "rows_per_table": dict(self.tables), "integrity_checked": self.integrity_checked,
            "dangling_total": self.dangling_total, "dangling": [d.to_dict() for d in self.dangling],
        }


# -- the checks ----------------------------------------------------------------------------

_RAW = msgspec.json.Decoder(msgspec.Raw)
_ROW = msgspec.json.Decoder(dict)


class _TableCheck:
    """Row lines of one table: JSON validity, count, checksum (``algorithm``)."""

    def __init__(self, name: str, entry: dict[str, Any], where: str, algorithm: str,
                 fks: ForeignKeys | None) -> None:
        self.name = name
        self.entry = entry
        self.where = where
        self.rows = 0
        self.span = TableSpan(name, 0, 0, 0)
        self.algorithm = algorithm
        self.digest = TABLE_CHECKSUMS[algorithm]()
        #: The foreign-key checker, when this table has keys to collect or to look up.
        self.fks = fks if fks is not None and fks.wants(name) else None

    def row(self, row: bytes, lineno: int) -> None:
        if not row.startswith(ROW_START):
            raise VerifyError(f"{self.where} line {lineno} (table '{self.name}'): not a row (a JSON object "
                              "was expected)", path=self.where, table=self.name, line=lineno)
        try:
            if self.fks is not None:
                self.fks.row(self.name, lineno, _ROW.decode(row))
            else:
                _RAW.decode(row)
        except msgspec.DecodeError as exc:
            raise row_error(self.where, self.name, lineno, self.rows + 1, exc) from None
        self.digest.update(row)
        self.digest.update(b"\n")
        self.rows += 1

    def finish(self, span: TableSpan) -> None:
        self.span = span
        check_count(span, self.entry.get("rows"), self.where)
        if self.algorithm in self.entry:
            self.check_digest(self.entry[self.algorithm], "the metadata")
        if self.fks is not None:
            self.fks.table_done(self.name)

    def check_digest(self, expected: Any, where_stored: str) -> None:
        if self.digest.hexdigest() != expected:
            raise VerifyError(f"{self.where} table '{self.name}' ({self.span.lines}): the rows do not match "
                              f"their {CHECKSUM_NAMES[self.algorithm]} in {where_stored} (the data was "
                              "changed)", path=self.where, table=self.name, line=self.span.first)


def _check_totals(metadata: dict[str, Any], counted: dict[str, int], where: str) -> None:
    if metadata.get("total_rows") != sum(counted.values()):
        raise VerifyError(f"{where}: the metadata says total_rows {metadata.get('total_rows')}, the tables "
                          f"hold {sum(counted.values()):,}", path=where)
    if metadata.get("total_tables") != len(counted):
        raise VerifyError(f"{where}: the metadata says total_tables {metadata.get('total_tables')}, the "
                          f"data holds {len(counted)}", path=where)


def _check_document(lines: Lines, where: str, integrity: bool, max_listed: int,
                    result: VerifyResult) -> ForeignKeys | None:
    """The rows, counts, checksums and totals of a document; its layout is the parser's."""
    parser = DocumentParser(lines, where)
    fks: ForeignKeys | None = None
    table: _TableCheck | None = None
    finished: dict[str, _TableCheck] = {}
    lineno = 0
    row_event = Kind.ROW
    for kind, value, lineno in parser:
        if kind is row_event:
            assert table is not None
            table.row(value, lineno)
        elif kind is Kind.TABLE:
            table = _TableCheck(value, parser.tables[value], where, parser.algorithm, fks)
        elif kind is Kind.TABLE_END:
            assert table is not None
            table.finish(value)
            finished[table.name] = table
            table = None
        elif kind is Kind.METADATA:
            fks = ForeignKeys(parser.tables, max_listed) if integrity else None
        elif kind is Kind.CHECKSUMS:
            _check_checksums(value, finished, parser.algorithm, where, lineno)
    counted = {name: check.rows for name, check in finished.items()}
    _check_totals(parser.metadata, counted, where)
    result.tables = counted
    result.lines = lineno
    if fks:
        fks.finish()
    return fks


def _check_checksums(sums: Any, finished: dict[str, _TableCheck], algorithm: str, where: str,
                     lineno: int) -> None:
    """The closing checksums (``{table: hex}``, on line ``lineno``) against the rows read."""
    if not isinstance(sums, dict) or set(sums) != set(finished):
        raise VerifyError(f"{where} line {lineno}: the checksums do not name exactly the tables of the data",
                          path=where, line=lineno)
    for name, check in finished.items():
        check.check_digest(sums[name], f"the checksums (line {lineno})")


def verify(location: str, *, identities: Sequence[str] = (), integrity: bool = False,
           s3_endpoint: str | None = None, max_listed: int = MAX_LISTED) -> VerifyResult:
    """Check the snapshot at ``location`` (a file, a JSON Lines folder or an ``s3://`` URL).

    Raises :class:`VerifyError` (with ``table`` and ``line`` fields where known) at the first
    problem. Dangling foreign keys (``integrity=True``) do not raise: they are in the result,
    whose ``ok`` is then False.
    """
    if not is_s3(location) and os.path.isdir(location):
        store, key = open_store(location)
        return _verify_folder(location, store, key, integrity=integrity, max_listed=max_listed)
    if is_s3(location) and not SNAPSHOT_NAME.search(location):
        # Not named as a document, with a manifest below it: a JSON Lines prefix.
        store, key = open_store(location, s3_endpoint=s3_endpoint)
        key = key.rstrip("/")
        if store.exists(f"{key}/{MANIFEST}" if key else MANIFEST):
            return _verify_folder(location, store, key, integrity=integrity, max_listed=max_listed)
    keys = None
    if identities:
        from ..crypto import load_identities

        keys = load_identities(identities)
    sidecar = read_sidecar(location, s3_endpoint=s3_endpoint)
    result = VerifyResult(path=location, checksum_file=sidecar[1] if sidecar else None)
    raw = open_input(location, s3_endpoint=s3_endpoint)
    hashing = HashingReader(raw)
    decrypting = None
    try:
        from ..crypto import is_encrypted

        head = read_head(hashing, 64)
        if is_encrypted(head) and keys is None:
            if sidecar is None:
                raise UsageError(f"{location} is encrypted; give --identity FILE to check its content "
                                 "(it has no .sha256 checksum file to check instead)", path=location)
            hashing.drain()
            result.encrypted, result.content_checked = True, False
            _compare_sidecar(hashing, sidecar, location, result)
            return result
        try:
            stream, decrypting = plain_stream(Prefixed(head, hashing), hashing, location, keys, result)
            fks = _check_document(Lines(stream), location, integrity, max_listed, result)
        except VerifyError as exc:
            # Say also whether the file differs from its checksum file: the whole file is read.
            if decrypting is not None:
                decrypting.close()
                decrypting = None
            if sidecar is not None:
                try:
                    hashing.drain()
                except SnapError:
                    raise exc from None
                if hashing.sha256.hexdigest() != sidecar[0]:
                    raise VerifyError(f"{exc.message}; the file's SHA-256 also differs from "
                                      f"{os.path.basename(sidecar[1])}", **exc.fields) from None
            raise
        if decrypting is not None:
            # The age stream must end cleanly too (its last chunk is authenticated).
            decrypting.read(1)
        hashing.drain()
        if fks is not None:
            result.integrity_checked = True
            result.dangling, result.dangling_total = fks.dangling, fks.total
        _compare_sidecar(hashing, sidecar, location, result)
        return result
    finally:
        if decrypting is not None:
            decrypting.close()
        raw.close()


def _compare_sidecar(hashing: HashingReader, sidecar: tuple[str, str] | None, where: str,
                     result: VerifyResult) -> None:
    result.sha256 = hashing.sha256.hexdigest()
    if sidecar is not None and result.sha256 != sidecar[0]:
        raise VerifyError(f"{where}: the file's SHA-256 {result.sha256} differs from the one in "
                          f"{os.path.basename(sidecar[1])} ({sidecar[0]}): the file was changed or "
                          "damaged after it was written", path=where)


def _verify_folder(folder: str, store: Store, prefix: str, *, integrity: bool,
                   max_listed: int) -> VerifyResult:
    """A JSON Lines folder (or S3 prefix): metadata.json and one file per table, read from the
    ``store`` below ``prefix``."""
    def key(name: str) -> str:
        return f"{prefix.rstrip('/')}/{name}" if prefix.rstrip("/") else name

    manifest = store.url(key(MANIFEST))
    data = store.read_small(key(MANIFEST), MAX_METADATA_BYTES)
    if data is None:
        raise VerifyError(f"{folder} has no {MANIFEST}; not a sqlsnap JSON Lines folder", path=folder)
    try:
        metadata = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise VerifyError(f"{manifest} is not valid JSON ({exc})", path=manifest) from None
    tables, algorithm = check_metadata(metadata, manifest, in_tables=True)
    fks = ForeignKeys(tables, max_listed) if integrity else None
    result = VerifyResult(path=folder, layout="jsonl", sha256=None)
    counted: dict[str, int] = {}
    lines_total = 0
    for name, entry in tables.items():
        file = entry.get("file")
        if not isinstance(file, str) or os.path.basename(file) != file:
            raise VerifyError(f"{manifest}: table '{name}' names no file in this folder", path=manifest,
                              table=name)
        path = store.url(key(file))
        raw = store.open(key(file))
        try:
            hashing = HashingReader(raw)
            stream, _ = plain_stream(hashing, hashing, path, None, result)
            check = _TableCheck(name, entry, path, algorithm, fks)
            row_event = Kind.ROW
            for kind, value, lineno in table_file_events(Lines(stream), path, name):
                if kind is row_event:
                    check.row(value, lineno)
                else:
                    check.finish(value)
        finally:
            raw.close()
        counted[name] = check.rows
        lines_total += check.rows
    _check_totals(metadata, counted, manifest)
    result.tables, result.lines = counted, lines_total
    if fks:
        fks.finish()
        result.integrity_checked = True
        result.dangling, result.dangling_total = fks.dangling, fks.total
    return result
