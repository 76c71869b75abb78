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
from typing import Any, ClassVar

from ..model import Column, Table
from ..plan.filters import RowFilter
from ..plan.request import Part, Projection, ReadRequest
from ..plan.segment import Closure, SegmentRead
from ..urls import SourceURL
from ..values import ENCODER, Converter

#: Readers yield about this many bytes of JSON lines at a time. 1 MiB keeps writes large
#: (psycopg's copy buffer is 128 KiB; larger writes stopped helping at about 1 MiB) while a
#: few chunks in flight per worker stay far below the 100 MB memory target.
CHUNK_BYTES = 1 << 20
#: The most rows fetched at a time on the row-by-row paths; below it fetches are sized by
#: bytes (``chunked_rows``). Memory in flight is rows times their size (about 30 KB a
#: row in flight for 3.4 KB rows at 10k rows, measured); 2000 rows costs no measurable speed
#: against 10000.
FETCH_ROWS = 2000
#: The first fetch of a table whose row size is not known yet (see ``chunked_rows``).
FIRST_FETCH_ROWS = 100


class Cancelled(Exception):
    """Raised inside a reader when the export was cancelled (another worker failed, Ctrl-C)."""


class TableReader(ABC):
    """Streams tables from the shared snapshot. One reader per thread."""

    @abstractmethod
    def read(self, request: ReadRequest, cancel: threading.Event) -> Iterator[tuple[bytes, int]]:
        """Yield ``(chunk, rows)``: ``chunk`` holds ``rows`` complete JSON lines of the rows
        the request selects; with a projection, each line holds its fields instead of every
        column as is."""

    @abstractmethod
    def count(self, request: ReadRequest) -> int:
        """The exact number of rows the request selects in the snapshot (``read`` must
        yield as many)."""

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Interrupt a running query from another thread, if the driver can."""

    def segment_counts(self, closure: Closure) -> dict[int, tuple[int, int]] | None:
        """Per node of ``closure``: its distinct keys in the closure and those reached only as
        parents (:func:`render_segment_counts`), in one query; None where the source cannot."""
        return None


class Source(ABC):
    dialect: ClassVar[str]
    #: How many readers may share the snapshot at once (1 where the server offers no way to
    #: share a snapshot between connections: MySQL, SQLite).
    max_readers: int = 1

    def __init__(self, url: SourceURL) -> None:
        self.url = url
        #: What the source needs to read each table (converters, SQL expressions, storage
        #: facts), by table name: the source's own, filled by ``list_tables``; the tables
        #: themselves (:class:`sqlsnap.model.Table`) stay plain schema.
        self.details: dict[str, Any] = {}

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

    def split(self, table: Table, part_bytes: int) -> list[Part]:
        """``table`` as disjoint ranges of about ``part_bytes`` of the table's storage each,
        which readers may read side by side, in the order their rows go in the snapshot; an
        empty list (the default) when the table is read whole."""
        return []

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
    encode: Callable[[Any], bytes]
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


#: A condition's operator in SQL (the same in the three dialects).
_SQL_OPERATORS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def bind(params: list[Any], placeholder: str,
         convert: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """A ``bind`` for :func:`render_filter` that collects the values into ``params`` (for the
    driver to bind) and writes ``placeholder`` in their place."""
    def add(value: Any) -> str:
        params.append(value if convert is None else convert(value))
        return placeholder

    return add


def render_filter(row_filter: RowFilter, quote: Callable[[str], str], bind: Callable[[Any], str]) -> str:
    """The SQL condition of ``row_filter``: column names through the dialect's ``quote``,
    every value through ``bind``, which returns the placeholder the driver fills (or the
    driver's own quoted literal, where a statement cannot take parameters: COPY). Values
    are never put into the text any other way."""
    sql: list[str] = []
    for c in row_filter.conditions:
        col = quote(c.column)
        if c.op in ("is null", "is not null"):
            sql.append(f"{col} {c.op.upper()}")
        elif c.op == "in":
            sql.append(f"{col} IN ({', '.join(bind(v) for v in c.values)})")
        elif c.op == "between":
            sql.append(f"{col} BETWEEN {bind(c.values[0])} AND {bind(c.values[1])}")
        else:
            sql.append(f"{col} {_SQL_OPERATORS[c.op]} {bind(c.values[0])}")
    return " AND ".join(sql)


class SegmentSQL:
    """How a dialect spells the recursive query of a segment (:func:`render_segment`).

    Keys of every table share the query's key columns, so they travel as text (``to_key``)
    and are turned back into the column's type where they meet the table read
    (``from_key``), so that the comparison is typed and the column's index serves it."""

    #: The equality that holds for two NULLs (the padding of shorter keys).
    null_safe_eq: str = "IS"
    #: ``MATERIALIZED `` where the dialect takes the hint (SQLite 3.35+, PostgreSQL 12+): a
    #: query referenced once is otherwise inlined and evaluated again at every step.
    materialized: str = ""

    def __init__(self, quote: Callable[[str], str], table_name: Callable[[Table], str]) -> None:
        self.quote = quote
        self.table_name = table_name

    def to_key(self, expr: str, column: Column) -> str:
        return expr

    def from_key(self, expr: str, column: Column) -> str:
        return expr

    def null_key(self) -> str:
        return "NULL"

    def bucket(self, seed: str, keys: Sequence[str]) -> str:
        """An integer in ``[0, BUCKETS)`` from a hash of the row's ``keys`` and ``seed`` (SQLite:
        a function the source registers, as SQLite has no hash)."""
        return f"sqlsnap_bucket({seed}, {', '.join(keys)})"


#: The recursive query's name; the tables' own names are always qualified by an alias.
_CLOSURE = "sqlsnap_closure"
_EDGES = "sqlsnap_edges"


def render_segment(segment: SegmentRead, dialect: SegmentSQL, bind: Callable[[Any], str]) -> str:
    """The SQL condition "this row is in the segment's closure", for a query on
    ``segment.closure.tables[segment.node]`` (unaliased): ``(key) IN (WITH RECURSIVE ...)``.

    The recursive query holds ``(t, d, k1..kN)``: the node (a table's index), whether the row
    was reached downwards (a seed or a child: 1) or only as a parent (0), and its key as
    text. Its seeds are the seed tables' filtered rows; per foreign-key edge, a row reached
    downwards brings the child rows that reference it, and any row brings the parent row it
    references (``sqlsnap_edges`` lists those pairs of keys).
    ``UNION`` (not ``UNION ALL``) drops rows already found, so cycles and self-references end
    when nothing new turns up: each row enters at most twice (d = 1 and d = 0). Seed filter
    values go through ``bind``; everything else in the text is the schema's names, quoted."""
    return _render_segment(segment, dialect, bind, counts=False)


def render_segment_counts(closure: Closure, dialect: SegmentSQL, bind: Callable[[Any], str]) -> str:
    """One query for every table of the closure: ``(t, rows, rows reached only as parents)``,
    counted by distinct key (a table's rows where its key is its primary key). One evaluation
    of the closure instead of two per table (a count and a count of parents only)."""
    return _render_segment(SegmentRead(closure, 0), dialect, bind, counts=True)


def _render_segment(segment: SegmentRead, dialect: SegmentSQL, bind: Callable[[Any], str],
                    counts: bool) -> str:
    cl = segment.closure
    q = dialect.quote
    width = cl.width
    cols = {t.name: {c.name: c for c in t.columns} for t in cl.tables}
    key_names = [f"k{i + 1}" for i in range(width)]

    def keys_of(i: int, alias: str) -> list[str]:
        t = cl.tables[i]
        out = [dialect.to_key(f"{alias}.{q(c)}", cols[t.name][c]) for c in cl.keys[i]]
        return out + [dialect.null_key()] * (width - len(out))

    def join(edge_cols: tuple[str, ...], ref_cols: tuple[str, ...]) -> str:
        return " AND ".join(f"x.{q(a)} = p.{q(b)}" for a, b in zip(edge_cols, ref_cols))

    anchors = []
    for i, row_filter, down in cl.seeds:
        cond = render_filter(row_filter, lambda name: "s." + q(name), bind) or "1 = 1"
        select = (f"SELECT {i} AS t, {int(down)} AS d, "
                  + ", ".join(f"{k} AS {n}" for k, n in zip(keys_of(i, 's'), key_names))
                  + f" FROM {dialect.table_name(cl.tables[i])} s WHERE {cond}")
        sample = cl.sample if down else None
        if sample is not None:
            # Each use binds the seed again: placeholders are filled in the order they appear.
            key_exprs = [f"s.{q(c)}" for c in cl.keys[i]]
            if sample.percent is not None:
                select += f" AND {dialect.bucket(bind(sample.seed), key_exprs)} < {bind(sample.threshold)}"
            if sample.limit is not None:
                order = ", ".join([dialect.bucket(bind(sample.seed), key_exprs), *key_exprs])
                select = f"SELECT * FROM ({select} ORDER BY {order} LIMIT {int(sample.limit)}) s{i}"
        anchors.append(select)
    index = {t.name: i for i, t in enumerate(cl.tables)}
    # Per edge and direction: the node it leaves from, the d that row needs, the aliases of
    # the tables it leaves from and arrives at, the node and d it arrives at.
    steps = []
    for e in cl.edges:
        child, parent = index[e.child], index[e.parent]
        steps.append((parent, 1, "p", "x", child, 1, e))  # down: the children of a row reached downwards
        steps.append((child, 0, "x", "p", parent, 0, e))  # up: the parent of any row
    head = f"{_CLOSURE}(t, d, {', '.join(key_names)})"
    body = " UNION ".join(anchors)
    if steps:
        # Every edge's pairs of keys, as text, in a query of its own that is computed once;
        # the recursive step is one hash join of the rows found last with it. One reference to
        # the recursive query is all PostgreSQL allows; one recursive select per edge instead
        # made MariaDB 10.11's optimizer ask for 3.4 GB at 14 of them (the demo has 60), and a
        # CROSS JOIN LATERAL of per-edge branches (PostgreSQL) took 0.7 s a query on the demo
        # (scale 1, no index on foreign-key columns) against 0.1 s for this.
        edges = " UNION ALL ".join(
            f"SELECT {frm} AS st, {need} AS sd, "
            + ", ".join(f"{k} AS s{j + 1}" for j, k in enumerate(keys_of(frm, a)))
            + f", {to} AS t, {d} AS d, " + ", ".join(f"{k} AS {n}" for k, n in zip(keys_of(to, b), key_names))
            + f" FROM {dialect.table_name(cl.tables[index[e.parent]])} p "
            + f"JOIN {dialect.table_name(cl.tables[index[e.child]])} x ON {join(e.columns, e.ref_columns)}"
            for frm, need, a, b, to, d, e in steps)
        # A key's first column is never NULL (a primary key, or a foreign key that joined): a
        # plain equality there lets the server hash the join; the padding is NULL on both sides.
        same = " AND ".join(f"n.s{j + 1} {'=' if j == 0 else dialect.null_safe_eq} c.{n}"
                            for j, n in enumerate(key_names))
        head = f"{_EDGES} AS {dialect.materialized}({edges}), {head}"
        body += (f" UNION SELECT n.t, n.d, {', '.join('n.' + n for n in key_names)} "
                 f"FROM {_CLOSURE} c JOIN {_EDGES} n ON n.st = c.t AND c.d >= n.sd AND {same}")
    node = segment.node
    t = cl.tables[node]
    if segment.seeds_only:
        picked = [dialect.from_key(k, cols[t.name][c]) for c, k in zip(cl.keys[node], key_names)]
        return (f"({', '.join(q(c) for c in cl.keys[node])}) IN (SELECT {', '.join(picked)} "
                f"FROM ({' UNION '.join(anchors)}) a WHERE t = {node})")
    if counts:
        grouped = ", ".join(key_names)
        return (f"WITH RECURSIVE {head} AS ({body}) SELECT t, count(*), "
                f"sum(CASE WHEN m = 0 THEN 1 ELSE 0 END) FROM (SELECT t, {grouped}, max(d) AS m "
                f"FROM {_CLOSURE} GROUP BY t, {grouped}) g GROUP BY t")
    picked = [dialect.from_key(k, cols[t.name][c]) for c, k in zip(cl.keys[node], key_names)]
    having = " GROUP BY " + ", ".join(key_names[:len(picked)]) + " HAVING max(d) = 0" \
        if segment.parents_only else ""
    keys = ", ".join(q(c) for c in cl.keys[node])
    return (f"({keys}) IN (WITH RECURSIVE {head} AS ({body}) "
            f"SELECT {', '.join(picked)} FROM {_CLOSURE} WHERE t = {node}{having})")
