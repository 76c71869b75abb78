"""``sqlsnap verify``: prove that a snapshot is whole and matches its metadata.

The file is streamed once, in constant memory (one block plus the longest row), through the
same layers that wrote it, in reverse: storage -> SHA-256 of the bytes as stored -> age
decryption (with ``identities``) -> decompression (zstd or gzip, told by the magic bytes)
-> lines. Checked, stopping at the first problem with its table and line:

- the layout of docs/format.md, exactly: metadata first, ``"data": {``, each table's
  ``"name": [`` line, one row per line, ``]``, ``}}`` and the end of the file;
- every row line is one valid JSON object;
- per table, the row count against ``metadata.tables[name].rows`` and the checksum of the
  rows (as JSON lines; the algorithm ``metadata.checksums`` names) against the document's
  closing ``"checksums"`` member (a JSON Lines folder: ``metadata.tables[name].xxh128``);
  every table of the metadata is present, no other; ``total_rows`` and ``total_tables``;
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
from ..format import (
    CHECKSUM_NAMES,
    CHECKSUMS_PREFIX,
    DATA_END,
    DATA_LINE,
    DOC_PREFIX,
    END,
    LEGACY_END,
    TABLE_CHECKSUMS,
    check_metadata,
)
from ..stores import is_s3, open_input, read_sidecar
from .integrity import Dangling, ForeignKeys
from .reader import HashingReader, Lines, Prefixed, plain_stream, read_head

#: A metadata block larger than this is not one sqlsnap wrote (about 1 KB a column).
MAX_METADATA_BYTES = 256 << 20
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

    def __init__(self, name: str, entry: dict[str, Any], first_line: int, where: str,
                 algorithm: str) -> None:
        self.name = name
        self.entry = entry
        self.first_line = first_line
        self.where = where
        self.rows = 0
        self.algorithm = algorithm
        self.digest = TABLE_CHECKSUMS[algorithm]()

    def row(self, row: bytes, lineno: int, fks: ForeignKeys | None) -> None:
        if not row.startswith(b"{"):
            raise VerifyError(f"{self.where} line {lineno} (table '{self.name}'): not a row (a JSON object "
                              "was expected)", path=self.where, table=self.name, line=lineno)
        try:
            if fks is not None:
                fks.row(self.name, lineno, _ROW.decode(row))
            else:
                _RAW.decode(row)
        except msgspec.DecodeError as exc:
            raise VerifyError(f"{self.where} line {lineno} (table '{self.name}', row {self.rows + 1}): "
                              f"not valid JSON ({exc})", path=self.where, table=self.name,
                              line=lineno) from None
        self.digest.update(row)
        self.digest.update(b"\n")
        self.rows += 1

    def finish(self, last_line: int) -> None:
        self.lines = f"lines {self.first_line}-{last_line}" if self.rows else f"line {self.first_line}"
        expected = self.entry.get("rows")
        if self.rows != expected:
            raise VerifyError(f"{self.where} table '{self.name}' ({self.lines}): {self.rows:,} rows, but the "
                              f"metadata says {expected}", path=self.where, table=self.name,
                              line=self.first_line)
        if self.algorithm in self.entry:
            self.check_digest(self.entry[self.algorithm], "the metadata")

    def check_digest(self, expected: Any, where_stored: str) -> None:
        if self.digest.hexdigest() != expected:
            raise VerifyError(f"{self.where} table '{self.name}' ({self.lines}): the rows do not match their "
                              f"{CHECKSUM_NAMES[self.algorithm]} in {where_stored} (the data was changed)",
                              path=self.where, table=self.name, line=self.first_line)


def _check_totals(metadata: dict[str, Any], counted: dict[str, int], where: str) -> None:
    tables = metadata["tables"]
    missing = [t for t in tables if t not in counted]
    if missing:
        raise VerifyError(f"{where}: table '{missing[0]}' is in the metadata but not in the data"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                          path=where, table=missing[0])
    if metadata.get("total_rows") != sum(counted.values()):
        raise VerifyError(f"{where}: the metadata says total_rows {metadata.get('total_rows')}, the tables "
                          f"hold {sum(counted.values()):,}", path=where)
    if metadata.get("total_tables") != len(counted):
        raise VerifyError(f"{where}: the metadata says total_tables {metadata.get('total_tables')}, the "
                          f"data holds {len(counted)}", path=where)


def _table_header(line: bytes) -> tuple[bytes, str] | None:
    """(shape, name) for ``"name": [``, ``"name": []`` or ``"name": [],``; None otherwise."""
    for shape in (b": [", b": []", b": [],"):
        if line.endswith(shape) and line.startswith(b'"'):
            try:
                name = msgspec.json.decode(line[: -len(shape)])
            except msgspec.DecodeError:
                continue
            if isinstance(name, str):
                return shape, name
    return None


def _check_document(lines: Lines, where: str, integrity: bool, max_listed: int,
                    result: VerifyResult) -> ForeignKeys | None:
    it = iter(lines)
    lineno = 0

    def cut_short() -> VerifyError:
        return VerifyError(f"{where} is truncated: line {lineno} is cut short", path=where, line=lineno)

    first = next(it, None)
    lineno = 1
    if first is None:
        raise VerifyError(f"{where} is empty", path=where)
    if not first.startswith(DOC_PREFIX):
        raise VerifyError(f"{where} is not a sqlsnap snapshot: it does not start with "
                          '{"metadata": ', path=where, line=1)
    meta_lines = [first[len(DOC_PREFIX):]]
    size = len(first)
    for line in it:
        lineno += 1
        if line == DATA_LINE and not lines.cut:
            break
        meta_lines.append(line)
        size += len(line) + 1
        if size > MAX_METADATA_BYTES:
            raise VerifyError(f"{where}: no \"data\" after {size:,} bytes of metadata; not a sqlsnap "
                              "snapshot", path=where, line=lineno)
    else:
        raise VerifyError(f"{where} is truncated: it ends inside the metadata (line {lineno})",
                          path=where, line=lineno)
    blob = b"\n".join(meta_lines)
    if not blob.endswith(b","):
        raise VerifyError(f"{where} line {lineno - 1}: the metadata must end with '}},' before the "
                          "\"data\" line", path=where, line=lineno - 1)
    try:
        metadata = msgspec.json.decode(blob[:-1])
    except msgspec.DecodeError as exc:
        raise VerifyError(f"{where}: the metadata (lines 1-{lineno - 1}) is not valid JSON ({exc})",
                          path=where, line=1) from None
    tables, algorithm = check_metadata(metadata, where)
    fks = ForeignKeys(tables, max_listed) if integrity else None

    # States: which lines may come next.
    header_or_end, header, first_row, row, close, end, checksums, closing, done = range(9)
    state = header_or_end
    table: _TableCheck | None = None
    counted: dict[str, int] = {}
    finished: dict[str, _TableCheck] = {}
    for line in it:
        lineno += 1
        if lines.cut:
            raise cut_short()
        if state in (first_row, row):
            assert table is not None
            if line.endswith(b","):
                table.row(line[:-1], lineno, fks if fks and fks.wants(table.name) else None)
                state = row
            elif line.startswith(b"{"):
                table.row(line, lineno, fks if fks and fks.wants(table.name) else None)
                state = close
            else:
                raise VerifyError(f"{where} line {lineno} (table '{table.name}'): a row was expected, "
                                  f"found {line[:60]!r}", path=where, table=table.name, line=lineno)
            continue
        if state == close:
            assert table is not None
            if line not in (b"]", b"],"):
                what = "another row after a row without a comma" if line.startswith(b"{") else repr(line[:40])
                raise VerifyError(f"{where} line {lineno} (table '{table.name}'): ']' expected, found {what}",
                                  path=where, table=table.name, line=lineno)
            table.finish(lineno - 1)
            if fks:
                fks.table_done(table.name)
            counted[table.name] = table.rows
            finished[table.name] = table
            state = header if line == b"]," else end
            table = None
            continue
        if state in (header_or_end, end) and line == DATA_END:
            state = checksums
            continue
        if state in (header_or_end, end) and line == LEGACY_END \
                and all("sha256" in e for e in tables.values()):
            # sqlsnap before the closing checksums member (same format version) ended the
            # data with '}}' and kept each table's SHA-256 in the metadata, checked above.
            state = done
            continue
        if state == checksums:
            _check_checksums(line, finished, algorithm, where, lineno)
            state = closing
            continue
        if state == closing:
            if line != END:
                raise VerifyError(f"{where} line {lineno}: '}}' (the end of the document) was expected, "
                                  f"found {line[:60]!r}", path=where, line=lineno)
            state = done
            continue
        if state in (header_or_end, header):
            parsed = _table_header(line)
            if parsed is None:
                raise VerifyError(f"{where} line {lineno}: a table (\"name\": [) was expected, found "
                                  f"{line[:60]!r}", path=where, line=lineno)
            shape, name = parsed
            if name in counted or (table and table.name == name):
                raise VerifyError(f"{where} line {lineno}: table '{name}' appears twice", path=where,
                                  table=name, line=lineno)
            if name not in tables:
                raise VerifyError(f"{where} line {lineno}: table '{name}' is not in the metadata",
                                  path=where, table=name, line=lineno)
            table = _TableCheck(name, tables[name], lineno, where, algorithm)
            if shape == b": [":
                state = first_row
            else:
                table.finish(lineno)
                if fks:
                    fks.table_done(name)
                counted[name] = 0
                finished[name] = table
                table = None
                state = header if shape == b": []," else end
            continue
        if state == done:
            raise VerifyError(f"{where} line {lineno}: unexpected content after the end of the document",
                              path=where, line=lineno)
        raise VerifyError(f"{where} line {lineno}: '}},' (the end of the data) was expected, found "
                          f"{line[:60]!r}", path=where, line=lineno)
    if state != done:
        inside = f" inside table '{table.name}'" if table else ""
        raise VerifyError(f"{where} is truncated: it ends at line {lineno}{inside}", path=where,
                          table=table.name if table else None, line=lineno)
    _check_totals(metadata, counted, where)
    result.tables = counted
    result.lines = lineno
    if fks:
        fks.finish()
    return fks


def _check_checksums(line: bytes, finished: dict[str, _TableCheck], algorithm: str, where: str,
                     lineno: int) -> None:
    """The closing ``"checksums": {algorithm: {table: hex}}`` line against the rows read."""
    if not line.startswith(CHECKSUMS_PREFIX):
        raise VerifyError(f"{where} line {lineno}: the \"checksums\" member was expected after the data, "
                          f"found {line[:60]!r}", path=where, line=lineno)
    try:
        sums = msgspec.json.decode(line[len(CHECKSUMS_PREFIX):])[algorithm]
    except (msgspec.DecodeError, TypeError, KeyError):
        raise VerifyError(f"{where} line {lineno}: the checksums are not a JSON object with \"{algorithm}\"",
                          path=where, line=lineno) from None
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
        return _verify_folder(location, integrity=integrity, max_listed=max_listed)
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


def _verify_folder(folder: str, *, integrity: bool, max_listed: int) -> VerifyResult:
    """A JSON Lines folder: metadata.json and one file per table."""
    manifest = os.path.join(folder, "metadata.json")
    try:
        with open(manifest, "rb") as fh:
            metadata = msgspec.json.decode(fh.read())
    except FileNotFoundError:
        raise VerifyError(f"{folder} has no metadata.json; not a sqlsnap JSON Lines folder",
                          path=folder) from None
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
        path = os.path.join(folder, file)
        raw = open_input(path)
        try:
            hashing = HashingReader(raw)
            stream, _ = plain_stream(hashing, hashing, path, None, result)
            check = _TableCheck(name, entry, 1, path, algorithm)
            lines = Lines(stream)
            lineno = 0
            use_fks = fks if fks and fks.wants(name) else None
            for line in lines:
                lineno += 1
                if lines.cut:
                    raise VerifyError(f"{path} is truncated: line {lineno} is cut short", path=path,
                                      table=name, line=lineno)
                check.row(line, lineno, use_fks)
            check.finish(max(lineno, 1))
        finally:
            raw.close()
        if fks:
            fks.table_done(name)
        counted[name] = check.rows
        lines_total += lineno
    _check_totals(metadata, counted, manifest)
    result.tables, result.lines = counted, lines_total
    if fks:
        fks.finish()
        result.integrity_checked = True
        result.dangling, result.dangling_total = fks.dangling, fks.total
    return result
