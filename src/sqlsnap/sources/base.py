"""The interface every database source implements.

A source opens one consistent, read-only snapshot, describes the tables in it, and hands
out readers that stream a table's rows as JSON lines (one object per line, ``\\n``-ended).
Readers never hold a table in memory: they yield chunks of about ``CHUNK_BYTES``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any, ClassVar

from ..schema import Table
from ..urls import SourceURL
from ..values import ENCODER, Converter

#: Readers yield about this many bytes of JSON lines at a time. 1 MiB keeps writes large
#: (psycopg's copy buffer is 128 KiB; larger writes stopped helping at about 1 MiB) while a
#: few chunks in flight per worker stay far below the 100 MB memory target.
CHUNK_BYTES = 1 << 20
#: The most rows fetched at a time on the row-by-row paths; below it fetches are sized by
#: bytes (``chunked_rows``). Memory in flight is rows times their size (ECOSYSTEM.md: ~30 KB
#: a row in flight for 3.4 KB rows at 10k rows); 2000 rows costs no measurable speed
#: against 10000.
FETCH_ROWS = 2000
#: The first fetch of a table whose row size is not known yet (see ``chunked_rows``).
FIRST_FETCH_ROWS = 100


@dataclass(frozen=True)
class OutputColumn:
    """One field of the exported rows (see :class:`Projection`).

    ``source`` is the index in ``table.columns`` of the value it is made from, None for a
    ``constant``. ``transform`` maps the converted (JSON-native) value to the value written;
    with ``owner`` set it is called as ``transform(value, owner_value)``, where
    ``owner_value`` is the converted, untransformed value of ``table.columns[owner]``.
    """

    name: str
    source: int | None
    transform: Callable[..., Any] | None = None
    owner: int | None = None
    constant: Any = None


@dataclass(frozen=True)
class Projection:
    """What a reader writes for a table when the export policy changes it: the output fields
    in order. Columns not named are never read; constants (null, redact) are not read either,
    so a server can write them as SQL literals. Readers get None for tables exported whole."""

    columns: tuple[OutputColumn, ...]

    @cached_property
    def reads(self) -> list[int]:
        """Indices of ``table.columns`` to fetch, in table order: sources and owners."""
        wanted = {c.source for c in self.columns if c.source is not None}
        wanted |= {c.owner for c in self.columns if c.owner is not None}
        return sorted(wanted)

    def encoder(self, names: Sequence[str], converters: Sequence[Converter]) -> Callable[[Any], bytes]:
        """``encode(batch) -> bytes`` for driver rows holding the ``reads`` columns, given the
        whole table's column ``names`` and ``converters``."""
        reads = self.reads
        convs = [converters[i] for i in reads]
        cols = self.columns
        if all(c.transform is None and c.source is not None for c in cols) and \
                [c.source for c in cols] == reads:
            out_names = [c.name for c in cols]
            return lambda batch: encode_rows(batch, out_names, convs)
        pos = {src: i for i, src in enumerate(reads)}
        getters: list[tuple[str, Callable[[list[Any]], Any]]] = []
        for c in cols:
            getters.append((c.name, _getter(c, pos)))

        def encode(batch: Any) -> bytes:
            out = []
            for row in batch:
                vals = [conv(value) for conv, value in zip(convs, row)]
                out.append({name: get(vals) for name, get in getters})
            return ENCODER.encode_lines(out)

        return encode


def _getter(c: OutputColumn, pos: dict[int, int]) -> Callable[[list[Any]], Any]:
    if c.source is None:
        constant = c.constant
        return lambda vals: constant
    p = pos[c.source]
    fn = c.transform
    if fn is None:
        return itemgetter(p)
    if c.owner is None:
        return lambda vals: fn(vals[p])
    o = pos[c.owner]
    return lambda vals: fn(vals[p], vals[o])


class Cancelled(Exception):
    """Raised inside a reader when the export was cancelled (another worker failed, Ctrl-C)."""


class TableReader(ABC):
    """Streams tables from the shared snapshot. One reader per thread."""

    @abstractmethod
    def read(
        self, table: Table, cancel: threading.Event, projection: Projection | None = None
    ) -> Iterator[tuple[bytes, int]]:
        """Yield ``(chunk, rows)``: ``chunk`` holds ``rows`` complete JSON lines; with a
        ``projection``, each line holds its fields instead of every column as is."""

    @abstractmethod
    def count(self, table: Table) -> int:
        """The table's exact number of rows in the snapshot (``read`` must yield as many)."""

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

    def split(self, table: Table, part_bytes: int) -> list[Table]:
        """``table`` as disjoint ranges of about ``part_bytes`` of the table's storage each,
        which readers may read side by side, in the order their rows go in the snapshot; by
        default the table whole."""
        return [table]

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
    fetch: Callable[[int], Sequence[Sequence[Any]]],
    names: Sequence[str],
    converters: Sequence[Converter],
    cancel: threading.Event,
    projection: Projection | None = None,
) -> Iterator[tuple[bytes, int]]:
    """Fetch driver rows with ``fetch(n)`` (up to n rows; none at the end) and turn them into
    chunks of JSON lines of about CHUNK_BYTES.

    Rows in flight cost memory by their size, so the fetches are sized by bytes: the first
    takes FIRST_FETCH_ROWS, each next one about a chunk at the bytes per row seen so far (at
    most FETCH_ROWS). ``names`` and ``converters`` are the whole table's; with a
    ``projection`` the rows hold only its ``reads`` columns, in that order."""
    if projection is None:
        def encode(batch: Any) -> bytes:
            return encode_rows(batch, names, converters)
    else:
        encode = projection.encoder(names, converters)
    parts: list[bytes] = []
    size = count = 0
    seen_rows = seen_bytes = 0
    n = FIRST_FETCH_ROWS
    while True:
        if cancel.is_set():
            raise Cancelled
        batch = fetch(n)
        if not batch:
            break
        data = encode(batch)
        parts.append(data)
        size += len(data)
        count += len(batch)
        seen_rows += len(batch)
        seen_bytes += len(data)
        n = max(1, min(FETCH_ROWS, CHUNK_BYTES * seen_rows // max(1, seen_bytes)))
        if size >= CHUNK_BYTES:
            yield b"".join(parts), count
            parts.clear()
            size = count = 0
    if count:
        yield b"".join(parts), count
