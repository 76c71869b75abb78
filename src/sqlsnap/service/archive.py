"""A JSON Lines export (a folder, or an S3 prefix) downloaded as one tar stream.

The archive is built while it is sent: each file's 512-byte header (``tarfile.TarInfo``),
its bytes read from the store in ``CHUNK`` pieces, the padding to a 512-byte block, and the
two empty blocks that end an archive. Nothing is held but one chunk, whatever the size of
the folder, and it works the same for a local folder and an S3 prefix (the store reads both).
Uncompressed tar: the table files are compressed already when the export was.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

from ..stores.base import Store

#: Bytes read from the store at a time (FileResponse's own chunk is 64 KiB).
CHUNK = 1 << 16
BLOCK = tarfile.BLOCKSIZE


def members(store: Store, prefix: str) -> list[tuple[str, int]]:
    """(key, size) of every file below ``prefix`` (ending in ``/``), sorted, sub-folders too."""
    out: list[tuple[str, int]] = []
    for entry in store.list(prefix):
        if entry.prefix:
            out.extend(members(store, entry.key))
        else:
            out.append((entry.key, entry.size))
    return sorted(out)


def tar_stream(store: Store, prefix: str, top: str, mtime: float) -> Iterator[bytes]:
    """The files below ``prefix`` (a folder's key, ending in ``/``) as a tar archive whose
    paths start with ``top/``."""
    for key, size in members(store, prefix):
        info = tarfile.TarInfo(f"{top}/{key[len(prefix):]}")
        info.size, info.mtime, info.mode = size, int(mtime), 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        reader = store.open(key)
        sent = 0
        try:
            while sent < size:
                chunk = reader.read(min(CHUNK, size - sent))
                if not chunk:
                    # Shorter than listed: the archive cannot be finished honestly; end the
                    # stream so the client sees a truncated download, not a wrong file.
                    raise OSError(f"{key} ended after {sent} of {size} bytes while it was sent")
                sent += len(chunk)
                yield chunk
        finally:
            reader.close()
        if size % BLOCK:
            yield b"\0" * (BLOCK - size % BLOCK)
    yield b"\0" * (2 * BLOCK)
