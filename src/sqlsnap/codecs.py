"""The codecs between the writer and the store: compression (zstd, gzip) and the checksum
tee that hashes the file's bytes on their way out. (Encryption, age, is in
:mod:`sqlsnap.crypto`; the per-table checksums are the format's, in :mod:`sqlsnap.format`.)"""

from __future__ import annotations

import gzip
import hashlib
import queue
import threading
from typing import Any, Protocol

from .errors import UsageError

COMPRESSIONS = ("zstd", "gzip", "none")
SUFFIXES = {"zstd": ".zst", "gzip": ".gz", "none": ""}
#: zstd level 3 with worker threads wrote 211 MB/s against gzip-6's 30 MB/s here, for a ratio
#: as good (3.7x on JSON lines); gzip level 6 is gzip's usual default.
ZSTD_LEVEL = 3
#: The multi-threaded compressor's unit of work. Its default (8 MiB at level 3) held 49 MB
#: for 2 threads; 2 MiB holds 15 MB, compresses 1 GB of the benchmark's JSON as fast (1.15 s
#: against 1.02 s) and as small (97.3 MB).
ZSTD_JOB_BYTES = 2 << 20
GZIP_LEVEL = 6


class Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


def compression_for(requested: str | None, path: str | None) -> str:
    """The codec asked for, or the one the file name's suffix implies."""
    if requested is not None:
        if requested not in COMPRESSIONS:
            raise UsageError(f"unknown compression '{requested}'; use one of: {', '.join(COMPRESSIONS)}")
        return requested
    if path:
        name = path.rstrip("/")
        if name.endswith(".zst") or name.endswith(".zstd"):
            return "zstd"
        if name.endswith(".gz"):
            return "gzip"
    return "none"


class BackgroundSHA256:
    """A SHA-256 computed on a thread of its own, at most ``QUEUED`` blocks behind.

    hashlib releases the GIL on large blocks, so the digest (about 0.7 s a GB here) takes a
    core that would otherwise idle while the writer, which also compresses and writes, uses
    another. Blocks must not change once given (bytes, or views of bytes)."""

    #: Blocks of about a chunk (1 MiB) each: enough to keep the hashing thread busy.
    QUEUED = 4

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.QUEUED)
        self._thread = threading.Thread(target=self._run, name="sqlsnap-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            self._sha.update(block)

    def update(self, block: Any) -> None:
        self._queue.put(block)

    def hexdigest(self) -> str:
        self.close()
        return self._sha.hexdigest()

    def close(self) -> None:
        """Stop the thread (idempotent); the digest is final."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class HashingWriter:
    """Counts and hashes the bytes on their way to ``fh``: the checksum of the file as written.
    ``sha256`` is a :class:`BackgroundSHA256`; ``close()`` it when abandoning the writer."""

    def __init__(self, fh: Writer) -> None:
        self.fh = fh
        self.sha256 = BackgroundSHA256()
        self.bytes = 0

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        self.fh.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.sha256.close()


class Compressed:
    """A compressing writer over ``fh``; ``close()`` ends the stream but leaves ``fh`` open."""

    def __init__(self, fh: Writer, compression: str) -> None:
        self._inner: Writer
        if compression == "zstd":
            import zstandard

            params = zstandard.ZstdCompressionParameters.from_level(
                ZSTD_LEVEL, threads=-1, job_size=ZSTD_JOB_BYTES)
            self._inner = zstandard.ZstdCompressor(compression_params=params).stream_writer(
                fh, closefd=False  # type: ignore[arg-type]
            )
        elif compression == "gzip":
            # mtime=0: the same data gives the same bytes, so checksums are reproducible.
            self._inner = gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=GZIP_LEVEL,  # type: ignore[call-overload]
                                        mtime=0)
        else:
            self._inner = fh
        self._closes = compression != "none"

    def write(self, data: bytes) -> None:
        self._inner.write(data)

    def close(self) -> None:
        if self._closes:
            self._inner.close()  # type: ignore[attr-defined]


