"""Reading a snapshot back, in bounded memory, through the layers that wrote it in reverse:
storage -> SHA-256 of the bytes as stored -> age decryption -> decompression (told by the
magic bytes) -> lines -> the document's layout (:class:`DocumentParser`) or a JSON Lines
table file (:func:`table_file_events`). ``verify`` and :func:`sqlsnap.snapshot.open_snapshot`
stream through these; nothing else knows how a document is laid out.

The parsers turn lines into events, each a tuple ``(kind, value, line)``:

==================  ==============================================  ============================
kind                value                                           line
==================  ==============================================  ============================
``Kind.METADATA``   the metadata (a dict, checked by                the ``"data": {`` line
                    :func:`sqlsnap.format.check_metadata`)
``Kind.TABLE``      the table's name                                its ``"name": [`` line
``Kind.ROW``        the row's bytes, without the separating comma   the row's line
``Kind.TABLE_END``  a :class:`TableSpan` (name, rows, first, last)   the table's last line
``Kind.CHECKSUMS``  ``{table: digest}`` of the metadata's algorithm  the ``"checksums"`` line
``Kind.END``        None                                            the number of lines
==================  ==============================================  ============================

A table file of the JSON Lines layout gives ``ROW`` events then one ``TABLE_END``. The
parsers raise :class:`VerifyError` (with ``table`` and ``line``) for a layout problem: a
truncated file, a row where ``]`` was expected, a table twice or not in the metadata,
content after the end. They never look inside a row: the consumer checks rows (verify) or
decodes them (the reader), and an error it raises stops the parser at that row's line.
Events come as the lines are read, so memory stays at one block plus the longest row."""

from __future__ import annotations

import enum
import gzip
import hashlib
import zlib
from collections.abc import Generator, Iterator, Sequence
from typing import Any, NamedTuple

import msgspec

from ..errors import SnapError, UsageError, VerifyError
from ..format import (
    CHECKSUMS_PREFIX,
    DATA_END,
    DATA_LINE,
    DOC_PREFIX,
    GZIP_MAGIC,
    LEGACY_END,
    ROW_START,
    SEPARATOR,
    TABLE_CLOSE_LAST,
    TABLE_CLOSE_NEXT,
    TABLE_EMPTY_LAST,
    TABLE_EMPTY_NEXT,
    TABLE_OPEN,
    ZSTD_MAGIC,
    check_metadata,
)
from ..format import END as DOC_END

#: Read size through the layers; also the unit of memory besides the longest row.
READ_BYTES = 1 << 20


#: A metadata block larger than this is not one sqlsnap wrote (about 1 KB a column).
MAX_METADATA_BYTES = 256 << 20


class CountingReader:
    """Counts the bytes as stored, on their way in: where damaged compressed data is."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.bytes = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.raw.read(n)
        self.bytes += len(data)
        return data

    def drain(self) -> None:
        while self.read(READ_BYTES):
            pass


class HashingReader(CountingReader):
    """Hashes and counts the bytes as stored, on their way in."""

    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.raw.read(n)
        self.sha256.update(data)
        self.bytes += len(data)
        return data


class Prefixed:
    """``head`` (already read to sniff the format) followed by the rest of ``stream``."""

    def __init__(self, head: bytes, stream: Any) -> None:
        self.head = head
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.stream.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            return data
        out: bytes = self.stream.read(n)
        return out


def read_head(stream: Any, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class Decompressed:
    """Decompression errors as VerifyError, located by the bytes read so far."""

    def __init__(self, stream: Any, compression: str, raw: CountingReader, name: str) -> None:
        self.compression = compression
        self.raw = raw
        self.name = name
        if compression == "zstd":
            import zstandard

            self._inner: Any = zstandard.ZstdDecompressor().stream_reader(
                stream, read_size=READ_BYTES, read_across_frames=True)
            self._errors: tuple[type[BaseException], ...] = (zstandard.ZstdError,)
        else:
            self._inner = gzip.GzipFile(fileobj=stream, mode="rb")
            self._errors = (OSError, EOFError, zlib.error)

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._inner.read(n)
            return data
        except SnapError:
            raise
        except self._errors as exc:
            raise VerifyError(f"{self.name}: {self.compression} data is damaged near byte {self.raw.bytes:,} "
                              f"of the file ({exc})", path=self.name) from None


class Lines:
    """Lines of a stream, without their ``\\n``; ``cut`` is True on a last line that has none."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.cut = False

    def __iter__(self) -> Iterator[bytes]:
        pending: list[bytes] = []
        while block := self.stream.read(READ_BYTES):
            if b"\n" not in block:
                pending.append(block)  # a long row: joined once its end arrives
                continue
            if pending:
                pending.append(block)
                block = b"".join(pending)
                pending = []
            lines = block.split(b"\n")
            tail = lines.pop()
            yield from lines
            if tail:
                pending = [tail]
        if pending:
            self.cut = True
            yield b"".join(pending)


def plain_stream(source: Any, counter: CountingReader, where: str, identities: Sequence[Any] | None,
                  result: Any) -> tuple[Any, Any]:
    """(the decrypted, decompressed stream, the decrypting reader or None). ``counter`` counts
    the bytes read from storage, to locate damaged compressed data."""
    from ..crypto import Decrypting, is_encrypted

    head = read_head(source, 64)
    stream: Any = Prefixed(head, source)
    decrypting = None
    if is_encrypted(head):
        if identities is None:
            raise UsageError(f"{where} is encrypted; give --identity FILE", path=where)
        result.encrypted = True
        decrypting = Decrypting(stream, identities, where)
        try:
            head = read_head(decrypting, 4)
        except BaseException:
            decrypting.close()
            raise
        stream = Prefixed(head, decrypting)
    compression = "none"
    if head.startswith(ZSTD_MAGIC):
        compression = "zstd"
    elif head.startswith(GZIP_MAGIC):
        compression = "gzip"
    result.compression = compression
    if compression != "none":
        stream = Decompressed(stream, compression, counter, where)
    return stream, decrypting


# -- the document's layout (docs/format.md) --------------------------------------------------



class Kind(enum.Enum):
    """What an event of :class:`DocumentParser` or :func:`table_file_events` tells. Loops
    over rows bind ``Kind.ROW`` to a local name first: an enum member's lookup costs 170 ns
    on Python 3.11, a local's 10; once per row that was a quarter of verify's time."""

    METADATA = "metadata"
    TABLE = "table"
    ROW = "row"
    TABLE_END = "table_end"
    CHECKSUMS = "checksums"
    END = "end"


#: ``(kind, value, line)``: the table in the module docstring.
Event = tuple[Kind, Any, int]


class TableSpan(NamedTuple):
    """A table as read: its rows and the lines they took (the header's line when empty; a
    JSON Lines file starts at line 1)."""

    name: str
    rows: int
    first: int
    last: int

    @property
    def lines(self) -> str:
        return f"lines {self.first}-{self.last}" if self.rows else f"line {self.first}"


def check_count(span: TableSpan, expected: Any, where: str) -> None:
    """The rows read against the metadata's count: a table cut short never passes."""
    if span.rows != expected:
        raise VerifyError(f"{where} table '{span.name}' ({span.lines}): {span.rows:,} rows, but the "
                          f"metadata says {expected}", path=where, table=span.name, line=span.first)


def row_error(where: str, table: str, line: int, row: int, exc: Exception) -> VerifyError:
    """A row line that is not one JSON object (``row``: its number in the table, from 1)."""
    return VerifyError(f"{where} line {line} (table '{table}', row {row}): not valid JSON ({exc})",
                       path=where, table=table, line=line)


def _table_header(line: bytes) -> tuple[bytes, str] | None:
    """(shape, name) for ``"name": [``, ``"name": []`` or ``"name": [],``; None otherwise."""
    for shape in (TABLE_OPEN, TABLE_EMPTY_LAST, TABLE_EMPTY_NEXT):
        if line.endswith(shape) and line.startswith(b'"'):
            try:
                name = msgspec.json.decode(line[: -len(shape)])
            except msgspec.DecodeError:
                continue
            if isinstance(name, str):
                return shape, name
    return None


class DocumentParser:
    """The one parser of the document's layout: iterate it for its events (the module
    docstring), once. After the ``METADATA`` event, ``metadata``, ``tables`` (its
    ``tables`` object) and ``algorithm`` (of the per-table checksums) are set."""

    def __init__(self, lines: Lines, where: str) -> None:
        self.lines = lines
        self.where = where
        self.metadata: dict[str, Any] = {}
        self.tables: dict[str, Any] = {}
        self.algorithm = ""

    def __iter__(self) -> Generator[Event, None, None]:
        return self._events()

    def _read_metadata(self, it: Iterator[bytes]) -> int:
        """Reads the lines up to ``"data": {``; the number of that line."""
        where, lines = self.where, self.lines
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
        if not blob.endswith(SEPARATOR):
            raise VerifyError(f"{where} line {lineno - 1}: the metadata must end with '}},' before the "
                              "\"data\" line", path=where, line=lineno - 1)
        try:
            metadata = msgspec.json.decode(blob[:-len(SEPARATOR)])
        except msgspec.DecodeError as exc:
            raise VerifyError(f"{where}: the metadata (lines 1-{lineno - 1}) is not valid JSON ({exc})",
                              path=where, line=1) from None
        self.tables, self.algorithm = check_metadata(metadata, where)
        self.metadata = metadata
        return lineno

    def _checksums(self, line: bytes, lineno: int) -> Any:
        """The closing ``"checksums": {algorithm: {table: hex}}`` line: its inner object."""
        where, algorithm = self.where, self.algorithm
        if not line.startswith(CHECKSUMS_PREFIX):
            raise VerifyError(f"{where} line {lineno}: the \"checksums\" member was expected after the data, "
                              f"found {line[:60]!r}", path=where, line=lineno)
        try:
            return msgspec.json.decode(line[len(CHECKSUMS_PREFIX):])[algorithm]
        except (msgspec.DecodeError, TypeError, KeyError):
            raise VerifyError(f"{where} line {lineno}: the checksums are not a JSON object with "
                              f"\"{algorithm}\"", path=where, line=lineno) from None

    def _events(self) -> Generator[Event, None, None]:
        lines, where = self.lines, self.where
        it = iter(lines)
        lineno = self._read_metadata(it)
        yield Kind.METADATA, self.metadata, lineno
        tables = self.tables
        row_event = Kind.ROW

        # States: which lines may come next.
        header_or_end, header, first_row, row, close, end, checksums, closing, done = range(9)
        state = header_or_end
        table: str | None = None  # the table whose rows are being read
        first = rows = 0
        seen: set[str] = set()
        for line in it:
            lineno += 1
            if lines.cut:
                raise VerifyError(f"{where} is truncated: line {lineno} is cut short", path=where,
                                  line=lineno)
            if state == row or state == first_row:
                if line.endswith(SEPARATOR):
                    rows += 1
                    yield row_event, line[:-1], lineno  # without the SEPARATOR
                    state = row
                elif line.startswith(ROW_START):
                    rows += 1
                    yield row_event, line, lineno
                    state = close
                else:
                    raise VerifyError(f"{where} line {lineno} (table '{table}'): a row was expected, "
                                      f"found {line[:60]!r}", path=where, table=table, line=lineno)
                continue
            if state == close:
                assert table is not None
                if line != TABLE_CLOSE_LAST and line != TABLE_CLOSE_NEXT:
                    what = ("another row after a row without a comma" if line.startswith(ROW_START)
                            else repr(line[:40]))
                    raise VerifyError(f"{where} line {lineno} (table '{table}'): ']' expected, found {what}",
                                      path=where, table=table, line=lineno)
                yield Kind.TABLE_END, TableSpan(table, rows, first, lineno - 1), lineno - 1
                state = header if line == TABLE_CLOSE_NEXT else end
                table = None
                continue
            if state in (header_or_end, end) and line == DATA_END:
                state = checksums
                continue
            if state in (header_or_end, end) and line == LEGACY_END \
                    and all("sha256" in e for e in tables.values()):
                # sqlsnap before the closing checksums member (same format version) ended the
                # data with '}}' and kept each table's SHA-256 in the metadata.
                state = done
                continue
            if state == checksums:
                yield Kind.CHECKSUMS, self._checksums(line, lineno), lineno
                state = closing
                continue
            if state == closing:
                if line != DOC_END:
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
                if name in seen:
                    raise VerifyError(f"{where} line {lineno}: table '{name}' appears twice", path=where,
                                      table=name, line=lineno)
                if name not in tables:
                    raise VerifyError(f"{where} line {lineno}: table '{name}' is not in the metadata",
                                      path=where, table=name, line=lineno)
                seen.add(name)
                yield Kind.TABLE, name, lineno
                if shape == TABLE_OPEN:
                    table, first, rows = name, lineno, 0
                    state = first_row
                else:
                    yield Kind.TABLE_END, TableSpan(name, 0, lineno, lineno), lineno
                    state = header if shape == TABLE_EMPTY_NEXT else end
                continue
            if state == done:
                raise VerifyError(f"{where} line {lineno}: unexpected content after the end of the document",
                                  path=where, line=lineno)
            raise VerifyError(f"{where} line {lineno}: '}},' (the end of the data) was expected, found "
                              f"{line[:60]!r}", path=where, line=lineno)
        if state != done:
            inside = f" inside table '{table}'" if table else ""
            raise VerifyError(f"{where} is truncated: it ends at line {lineno}{inside}", path=where,
                              table=table, line=lineno)
        missing = [t for t in tables if t not in seen]
        if missing:
            raise VerifyError(f"{where}: table '{missing[0]}' is in the metadata but not in the data"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                              path=where, table=missing[0])
        yield Kind.END, None, lineno


def table_file_events(lines: Lines, where: str, name: str) -> Iterator[Event]:
    """The events of table ``name``'s file in the JSON Lines layout: one ``ROW`` a line, then
    its ``TABLE_END``; a last line without its newline is a truncated file."""
    lineno = 0
    row_event = Kind.ROW
    for line in lines:
        lineno += 1
        if lines.cut:
            raise VerifyError(f"{where} is truncated: line {lineno} is cut short", path=where,
                              table=name, line=lineno)
        yield row_event, line, lineno
    yield Kind.TABLE_END, TableSpan(name, lineno, 1, max(lineno, 1)), max(lineno, 1)
