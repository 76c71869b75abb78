"""Where bytes go: compression codecs, checksums (the file's SHA-256 tee, each table's
XXH3-128), and destinations that make a file appear under its final name only when it is
complete."""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import queue
import secrets
import shutil
import sys
import threading
from typing import Any, Protocol

import xxhash

from .errors import OutputError, UsageError

COMPRESSIONS = ("zstd", "gzip", "none")
SUFFIXES = {"zstd": ".zst", "gzip": ".gz", "none": ""}
#: zstd level 3 with worker threads wrote 211 MB/s against gzip-6's 30 MB/s for a ratio as
#: good (ECOSYSTEM.md section 7); gzip level 6 is gzip's usual default.
ZSTD_LEVEL = 3
#: The multi-threaded compressor's unit of work. Its default (8 MiB at level 3) held 49 MB
#: for 2 threads; 2 MiB holds 15 MB, compresses 1 GB of the benchmark's JSON as fast (1.15 s
#: against 1.02 s) and as small (97.3 MB).
ZSTD_JOB_BYTES = 2 << 20
GZIP_LEVEL = 6
#: Read size of spooled table bytes on their way into the document (1 MiB: as CHUNK_BYTES).
COPY_BYTES = 1 << 20


#: The per-table checksum: XXH3-128 of the table's rows as JSON lines (docs/format.md), the
#: digest that ``xxh128sum`` prints. Its job is to find the damaged table; the file as a
#: whole has its SHA-256 beside it. It runs at 29 GB/s here against SHA-256's 1.4 GB/s, which
#: took 0.7 s of CPU for every GB exported, on cores the database server shares.
TABLE_CHECKSUM = "xxh128"
#: Per-table checksums ``sqlsnap verify`` reads: files written before XXH3-128 used SHA-256.
TABLE_CHECKSUMS: dict[str, Any] = {"xxh128": xxhash.xxh3_128, "sha256": hashlib.sha256}


class Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


#: glibc's allocator, as tuned by keep_chunk_memory(): blocks up to this size come from the
#: heap, and this much free memory may stay there before it is given back to the system.
MALLOC_MMAP_BYTES = 8 << 20
MALLOC_TRIM_BYTES = 8 << 20


def keep_chunk_memory() -> bool:
    """Let glibc reuse the memory of freed chunks instead of returning it to the system.

    An export allocates and frees a megabyte-sized bytes object for every chunk on its way
    from the database to the file. glibc gave each one fresh pages from the kernel (its
    threads' arenas trim the freed memory at once), and faulting those pages in cost about
    a quarter of the client's CPU on the benchmark: 1.2 s of sys time in 1 GB (2.0 s -> 0.8 s
    with one reader: bench/README.md, "Between run D and run G"). It also made the S3 sink's
    peak memory steady (its 8 MiB part buffers are reused instead of mapped anew:
    bench/README.md, "S3 sink").
    The memory kept is at most MALLOC_TRIM_BYTES per arena.

    Process-wide, so the CLI calls it and the library does not. A no-op without glibc, or
    when the user tuned malloc already (MALLOC_*_ or GLIBC_TUNABLES). True if applied."""
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ or any(
        k.startswith("MALLOC_") for k in os.environ
    ):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(mallopt(m_mmap_threshold, MALLOC_MMAP_BYTES)) and bool(
        mallopt(m_trim_threshold, MALLOC_TRIM_BYTES)
    )


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
            self._inner = gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[arg-type]
        else:
            self._inner = fh
        self._closes = compression != "none"

    def write(self, data: bytes) -> None:
        self._inner.write(data)

    def close(self) -> None:
        if self._closes:
            self._inner.close()  # type: ignore[attr-defined]


def os_error(exc: OSError, path: str) -> OutputError:
    """A one-line message naming the fix for a failed write."""
    if exc.errno == errno.ENOSPC:
        return OutputError(f"disk full while writing {path}; free some space or choose another "
                           "destination with -o", path=path)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"permission denied writing {path}; choose a writable destination with -o",
                           path=path)
    if exc.errno == errno.ENOENT:
        return OutputError(f"folder {os.path.dirname(path) or '.'} does not exist; create it or choose "
                           "another destination with -o", path=path)
    return OutputError(f"cannot write {path}: {exc.strerror or exc}", path=path)


def check_writable_folder(path: str) -> None:
    """Fail before reading the database when the output folder cannot take the file."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"folder {folder} does not exist; create it or choose another destination "
                          "with -o", path=path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"permission denied writing in {folder}; choose a writable destination with -o",
                          path=path)


def temp_name(final: str, tag: str) -> str:
    """A hidden name beside ``final`` (same file system, so the last rename is atomic)."""
    folder, base = os.path.split(os.path.abspath(final))
    return os.path.join(folder, f".{base}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")


#: Written bytes are handed to the kernel for writeback every this many bytes, so that the
#: fsync at the end has little left to do (1 GB: 0.30 s of fsync, 0.02 s with this) and the
#: export does not fill the page cache of a machine that also runs the database.
WRITEBACK_BYTES = 64 << 20


class WritebackFile:
    """A binary file that starts the writeback of what it has written every
    ``WRITEBACK_BYTES`` (``POSIX_FADV_DONTNEED`` starts it without waiting, and lets the
    kernel drop the pages once written)."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "xb")  # noqa: SIM115 - closed by close()
        self._written = 0
        self._advised = 0

    def write(self, data: Any) -> int:
        n = self._fh.write(data)
        self._written += n
        if self._written - self._advised >= WRITEBACK_BYTES and hasattr(os, "posix_fadvise"):
            self._fh.flush()
            os.posix_fadvise(self._fh.fileno(), self._advised, self._written - self._advised,
                             os.POSIX_FADV_DONTNEED)
            self._advised = self._written
        return n

    def flush(self) -> None:
        self._fh.flush()

    def fileno(self) -> int:
        return self._fh.fileno()

    def close(self) -> None:
        self._fh.close()


class AtomicFile:
    """A file written under a temporary name and renamed into place by ``commit()``."""

    def __init__(self, final: str) -> None:
        self.final = final
        self.tmp = temp_name(final, "tmp")
        try:
            self.fh = WritebackFile(self.tmp)
        except OSError as exc:
            raise os_error(exc, final) from None

    def commit(self) -> None:
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.tmp, self.final)
        except OSError as exc:
            self.abort()
            raise os_error(exc, self.final) from None

    def abort(self) -> None:
        try:
            self.fh.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


class AtomicDir:
    """A folder filled under a temporary name and renamed into place by ``commit()``."""

    def __init__(self, final: str) -> None:
        self.final = final
        if os.path.exists(final):
            raise OutputError(f"{final} already exists; remove it or choose another folder with -o",
                              path=final)
        self.tmp = temp_name(final, "tmp")
        try:
            os.mkdir(self.tmp)
        except OSError as exc:
            raise os_error(exc, final) from None

    def commit(self) -> None:
        try:
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(self.tmp, self.final)
        except OSError as exc:
            self.abort()
            raise os_error(exc, self.final) from None

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class StdoutSink:
    """Standard output: cannot be made atomic, so a failure is reported by the exit code."""

    final = "-"

    def __init__(self) -> None:
        self.fh = sys.stdout.buffer

    def commit(self) -> None:
        self.fh.flush()

    def abort(self) -> None:
        try:
            self.fh.flush()
        except OSError:
            pass
