"""The document layout: ``{"metadata": ..., "data": {...}, "checksums": {...}}``, one row a
line, written front to back as the rows arrive (the framing is :mod:`sqlsnap.format`'s)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import msgspec

from ..codecs import Compressed, HashingWriter
from ..errors import SnapError
from ..format import (
    CHECKSUMS_PREFIX,
    DATA_END,
    DATA_LINE,
    DOC_PREFIX,
    END,
    SEPARATOR,
    TABLE_CHECKSUM,
    TABLE_CHECKSUMS,
    TABLE_CLOSE_LAST,
    TABLE_OPEN,
    TableOutcome,
    encode_metadata,
)
from ..model import Table

#: A chunk larger than this (a row with a large value that its source could not cut into
#: pieces) is written in slices of this size: its copy with the rows' separators is made one
#: slice at a time instead of whole (the value would be held twice more).
SLICE_BYTES = 4 << 20


def _slices(chunk: bytes) -> Iterator[bytes]:
    if len(chunk) <= SLICE_BYTES:
        yield chunk
        return
    view = memoryview(chunk)
    for start in range(0, len(chunk), SLICE_BYTES):
        yield bytes(view[start:start + SLICE_BYTES])


def write_document(
    upload: Any,
    compression: str,
    metadata: dict[str, Any],
    order: Sequence[Table],
    channels: dict[str, list[Any]],
    check: Callable[[], None],
    results: Mapping[str, TableOutcome],
    recipients: Sequence[Any] = (),
) -> tuple[int, str]:
    """Write ``{"metadata": ..., "data": {...}, "checksums": {...}}`` as the rows arrive: one
    row per line, tables in ``order``, each from its parts' ``channels`` in turn. The
    per-table checksums are computed here, where each table's bytes pass in order (its parts
    are read side by side), so that the reader threads do nothing but drain the server.

    Bytes go data -> compression -> age encryption (with ``recipients``) -> SHA-256 -> the
    store's ``upload``."""
    tee = HashingWriter(upload)
    encrypting = None
    if recipients:
        from ..crypto import Encrypting

        encrypting = Encrypting(tee, recipients)
    out = Compressed(encrypting or tee, compression)
    try:
        out.write(DOC_PREFIX + encode_metadata(metadata) + b",\n" + DATA_LINE)
        for i, table in enumerate(order):
            out.write((SEPARATOR if i else b"") + b"\n" + msgspec.json.encode(table.name) + TABLE_OPEN)
            # Rows are JSON lines; in the document they are separated by ",\n". The last two
            # bytes written so far are held back: at the table's end they are the ",\n" that
            # must not follow the last row. (Spooled chunks may end inside a row.)
            held = b""
            digest = TABLE_CHECKSUMS[TABLE_CHECKSUM]()
            for channel in channels[table.name]:
                for chunk in channel.chunks(check):
                    digest.update(chunk)
                    for part in _slices(chunk):
                        piece = part.replace(b"\n", b",\n")
                        out.write(held or b"\n")
                        out.write(memoryview(piece)[:-2])  # type: ignore[arg-type]  # any buffer
                        held = piece[-2:]
                channel.release()
            results[table.name].checksum = digest.hexdigest()
            if held and held != b",\n":
                raise SnapError(f"table {table.name}: the reader did not end its last row", table=table.name)
            out.write(b"\n" + TABLE_CLOSE_LAST if held else TABLE_CLOSE_LAST)
        checksums = {TABLE_CHECKSUM: {t.name: results[t.name].checksum for t in order}}
        out.write(b"\n" + DATA_END + b"\n" + CHECKSUMS_PREFIX + msgspec.json.encode(checksums)
                  + b"\n" + END + b"\n")
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
