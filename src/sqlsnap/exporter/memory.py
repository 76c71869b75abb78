"""Process-wide memory tuning for long exports (called by the CLI and the service, never
by the library on its own)."""

from __future__ import annotations

import os
import sys

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
    with one reader). It also made the S3 sink's peak memory steady (its 8 MiB part buffers
    are reused instead of mapped anew). The measurements are in bench/README.md.
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
