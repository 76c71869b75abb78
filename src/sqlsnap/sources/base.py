"""The interface every database source implements.

A source opens one consistent, read-only snapshot, describes the tables in it, and hands
out readers that stream a table's rows as JSON lines (one object per line, ``\\n``-ended).
Readers never hold a table in memory: they yield chunks of about ``CHUNK_BYTES``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from ..schema import Table
from ..urls import SourceURL
from ..values import ENCODER, Converter

#: Readers yield about this many bytes of JSON lines at a time. 1 MiB keeps writes large
#: (psycopg's copy buffer is 128 KiB; larger writes stopped helping at about 1 MiB) while a
#: few chunks in flight per worker stay far below the 100 MB memory target.
CHUNK_BYTES = 1 << 20
#: Rows fetched per round trip on the row-by-row paths. Memory in flight is this times the
#: row size (ECOSYSTEM.md: ~30 KB a row in flight for 3.4 KB rows at 10k rows), so keep it
#: modest; 2000 rows costs no measurable speed against 10000.
FETCH_ROWS = 2000


class Cancelled(Exception):
    """Raised inside a reader when the export was cancelled (another worker failed, Ctrl-C)."""


class TableReader(ABC):
    """Streams tables from the shared snapshot. One reader per thread."""

    @abstractmethod
    def read(self, table: Table, cancel: threading.Event) -> Iterator[tuple[bytes, int]]:
        """Yield ``(chunk, rows)``: ``chunk`` holds ``rows`` complete JSON lines."""

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Interrupt a running query from another thread, if the driver can."""


class Source(ABC):
    dialect: ClassVar[str]
    #: How many readers may share the snapshot at once (1 where the server offers no way to
    #: share a snapshot between connections: MySQL, SQLite).
    max_readers: int = 1

    def __init__(self, url: SourceURL) -> None:
        self.url = url

    @abstractmethod
    def open(self) -> None:
        """Connect and start the consistent read-only snapshot."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """``dialect``, ``server_version``, ``database``, ``host`` (never a password)."""

    @abstractmethod
    def list_tables(self, schemas: Sequence[str] | None) -> list[Table]:
        """Every base table in the snapshot (no views; partitions folded into their parent)."""

    @abstractmethod
    def reader(self) -> AbstractContextManager[TableReader]:
        """A reader on the snapshot; sources with ``max_readers > 1`` open a new connection."""

    @abstractmethod
    def close(self) -> None:
        """End the snapshot transaction (a rollback: nothing was ever written) and disconnect."""

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_rows(
    rows: Iterator[Sequence[Any]] | Sequence[Sequence[Any]],
    names: Sequence[str],
    converters: Sequence[Converter],
) -> bytes:
    """Convert a batch of driver rows and encode them as JSON lines."""
    return ENCODER.encode_lines(
        [{name: conv(value) for name, conv, value in zip(names, converters, row)} for row in rows]
    )


def chunked_rows(
    batches: Iterator[Sequence[Sequence[Any]]],
    names: Sequence[str],
    converters: Sequence[Converter],
    cancel: threading.Event,
) -> Iterator[tuple[bytes, int]]:
    """Turn batches of driver rows into chunks of JSON lines of about CHUNK_BYTES."""
    buf = bytearray()
    count = 0
    for batch in batches:
        if cancel.is_set():
            raise Cancelled
        buf += encode_rows(batch, names, converters)
        count += len(batch)
        if len(buf) >= CHUNK_BYTES:
            yield bytes(buf), count
            buf.clear()
            count = 0
    if count:
        yield bytes(buf), count
