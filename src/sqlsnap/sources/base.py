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
from ..plan.segment import Closure, Edge, SegmentRead
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
#: A text or binary value longer than this (characters, or bytes) is read and written in
#: pieces of PIECE_CHARS where the source can (docs/reliability.md, "Memory"): held whole, it
#: was held three times over (as the driver's, as a str, as JSON), 3.2x its size. 16 MiB is
#: 16 chunks: a value this size held twice still costs less than the chunks a few readers
#: and the writer hold anyway, and no row of normal data comes near it (PostgreSQL keeps a
#: row in an 8 KB page and its large values out of line, so only TOASTed values can pass it).
HUGE_VALUE = 16 << 20
#: The size of those pieces: a chunk.
PIECE_CHARS = CHUNK_BYTES


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
    #: Set before ``list_tables`` when the export will read a segment's closure: a source that
    #: can keep the closure's rows for the snapshot's length prepares a place for them.
    keep_closure: bool = False

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
    huge: Callable[[Sequence[Any]], Iterator[bytes]] | None = None,
) -> Iterator[tuple[bytes, int]]:
    """Fetch driver rows with ``fetch(n)`` (up to n rows; none at the end) and turn them into
    chunks of JSON lines of about CHUNK_BYTES.

    Rows in flight cost memory by their size, so the fetches are sized by bytes: the first
    takes FIRST_FETCH_ROWS, each next one about a chunk at the bytes per row seen so far (at
    most FETCH_ROWS). ``names`` and ``converters`` are the whole table's; with a
    ``projection`` the rows hold only its ``reads`` columns, in that order.

    With ``huge``, each row holds one more item, after its columns: None, or a mark that the
    source left a value out because it is too large to hold twice (``HUGE_VALUE``); such a
    row's line is ``huge(row)``, in pieces, which go out as chunks of their own."""
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
        if huge is not None and any(row[-1] is not None for row in batch):
            start = 0
            for at, row in enumerate(batch):
                if row[-1] is None:
                    continue
                if at > start:
                    parts.append(encode(batch[start:at]))
                    count += at - start
                if parts:
                    yield b"".join(parts), count
                    parts.clear()
                    size = count = 0
                yield from row_in_pieces(huge(row), cancel)
                start = at + 1
            batch = batch[start:]
            if not batch:
                continue
        fetched = len(batch)
        data = encode(batch)
        # The driver's rows go before the chunk is handed on: holding them while a chunk with
        # one large value was written held that value twice (bench/README.md, "One huge value").
        del batch
        seen_rows += fetched
        seen_bytes += len(data)
        n = max(1, min(FETCH_ROWS, CHUNK_BYTES * seen_rows // max(1, seen_bytes)))
        if parts and len(data) >= CHUNK_BYTES:
            # A batch as large as a chunk (a large row) goes out alone: joined with the rows
            # before it, it would be copied once more.
            yield b"".join(parts), count
            parts.clear()
            size = count = 0
        parts.append(data)
        size += len(data)
        count += fetched
        del data
        if size >= CHUNK_BYTES:
            chunk = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            yield chunk, count
            del chunk
            size = count = 0
    if count:
        yield b"".join(parts), count


def leave_out_large(exprs: list[str], places: Sequence[int], too_long: Callable[[str], str],
                    row_id: str) -> None:
    """In place: each expression at ``places`` NULL where ``too_long(expr)`` holds (a value over
    HUGE_VALUE, its size read without fetching the value), and one expression more, the row's
    ``row_id`` where any was left out (else NULL): the mark by which the reader reads that row's
    large values in pieces."""
    long_ = [too_long(exprs[i]) for i in places]
    for i, cond in zip(places, long_):
        exprs[i] = f"CASE WHEN {cond} THEN NULL ELSE {exprs[i]} END"
    exprs.append(f"CASE WHEN {' OR '.join(long_)} THEN {row_id} END")


def row_in_pieces(pieces: Iterator[bytes], cancel: threading.Event) -> Iterator[tuple[bytes, int]]:
    """A row's line in pieces, as chunks: the row is counted with its last piece (a chunk is
    never empty: the document writer holds back a chunk's last two bytes)."""
    last = b""
    for piece in pieces:
        if cancel.is_set():
            raise Cancelled
        if not piece:
            continue
        if last:
            yield last, 0
        last = piece
    yield last, 1


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

    def json_text(self, expr: str, path: str) -> str:
        """The value at ``path`` (checked by ``plan.segment.JSON_PATH``: only keys and
        positions, so it is written as it is) inside the JSON text ``expr``, NULL when absent."""
        return f"json_extract({expr}, '{path}')"

    #: How a step of the recursion is written: ``branches``, one recursive select per edge
    #: and direction, each a join through the table's index from the rows found last
    #: (SQLite); or ``pairs``, one join with every edge's pairs of keys listed once (MariaDB).
    #: PostgreSQL computes the closure set by set instead (``segment_sets``).
    step_form: str = "branches"

    def indexed(self, table: Table, columns: Sequence[str]) -> bool:
        """Whether an index leads with one of ``columns`` of ``table`` (a foreign key's): a step
        down that edge then looks the children up instead of reading the table."""
        return False

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


def render_segment_rows(closure: Closure, dialect: SegmentSQL, bind: Callable[[Any], str]) -> str:
    """One query for the whole closure: ``(t, k1..kN, m)``, each row once, ``m`` 1 where it was
    reached downwards (a seed or a child), 0 where only as a parent. A source that can keep
    it for the snapshot's length without writing to the database (SQLite: a temporary table
    of its own connection) evaluates the closure once, not once per table."""
    return _render_segment(SegmentRead(closure, 0), dialect, bind, counts=True, rows=True)


def _render_segment(segment: SegmentRead, dialect: SegmentSQL, bind: Callable[[Any], str],
                    counts: bool, rows: bool = False) -> str:
    r = _Render(segment.closure, dialect, bind)
    cl, q, key_names = r.cl, dialect.quote, r.key_names
    # Only what can reach the table read (all of it for the counts): the steps between the
    # states (table, reached downwards) that lie on a path from a seed to this table.
    states, steps = relevant_steps(cl, None if counts else segment.node)
    # Placeholders are filled in the order they appear in the text, so every part is rendered
    # in that order: the pairs of keys (MariaDB) come first, in the WITH before the closure.
    head = f"{_CLOSURE}(t, d, {', '.join(key_names)})"
    if steps and dialect.step_form == "pairs" and not segment.seeds_only:
        head = f"{_EDGES} AS {dialect.materialized}({r.pairs(steps)}), {head}"
    anchors = [r.seed(i, row_filter, f"{i} AS t, {int(down)} AS d, "
                      + ", ".join(f"{k} AS {n}" for k, n in zip(r.keys_of(i, 's'), key_names)))
               for i, row_filter, down in cl.seeds if (i, down) in states]
    node = segment.node
    t = cl.tables[node]
    if not cl.keys[node] and not counts:
        return "1 = 0"  # a table without a key holds no row of the segment (build_closure)
    picked = [dialect.from_key(k, r.cols[t.name][c]) for c, k in zip(cl.keys[node], key_names)]
    keys = ", ".join(q(c) for c in cl.keys[node])
    if segment.seeds_only:
        return (f"({keys}) IN (SELECT {', '.join(picked)} "
                f"FROM ({' UNION '.join(anchors)}) a WHERE t = {node})")
    if not anchors:
        return f"SELECT NULL AS t, {', '.join('NULL AS ' + n for n in key_names)}, 0 AS m WHERE 1 = 0" \
            if rows else "SELECT 0, 0, 0 WHERE 1 = 0" if counts else "1 = 0"
    body = " UNION ".join(anchors)
    if steps and dialect.step_form == "pairs":
        # A key's first column is never NULL (a primary key, or a foreign key that joined): a
        # plain equality there lets the server hash the join; the padding is NULL on both sides.
        same = " AND ".join(f"n.s{j + 1} {'=' if j == 0 else dialect.null_safe_eq} c.{n}"
                            for j, n in enumerate(key_names))
        body += (f" UNION SELECT n.t, n.d, {', '.join('n.' + n for n in key_names)} "
                 f"FROM {_CLOSURE} c JOIN {_EDGES} n ON n.st = c.t AND c.d >= n.sd AND {same}")
    elif steps:
        body += " UNION " + " UNION ".join(r.branch(step, f"{_CLOSURE} f") for step in steps)
    if rows:
        grouped = ", ".join(key_names)
        return (f"WITH RECURSIVE {head} AS ({body}) SELECT t, {grouped}, max(d) AS m "
                f"FROM {_CLOSURE} GROUP BY t, {grouped}")
    if counts:
        grouped = ", ".join(key_names)
        return (f"WITH RECURSIVE {head} AS ({body}) SELECT t, count(*), "
                f"sum(CASE WHEN m = 0 THEN 1 ELSE 0 END) FROM (SELECT t, {grouped}, max(d) AS m "
                f"FROM {_CLOSURE} GROUP BY t, {grouped}) g GROUP BY t")
    having = " GROUP BY " + ", ".join(key_names[:len(picked)]) + " HAVING max(d) = 0" \
        if segment.parents_only else ""
    return (f"({keys}) IN (WITH RECURSIVE {head} AS ({body}) "
            f"SELECT {', '.join(picked)} FROM {_CLOSURE} WHERE t = {node}{having})")


#: A step of the closure: the node it leaves from, the ``d`` that row needs (1: only rows
#: reached downwards bring their children), the node and ``d`` it arrives at, the edge, and
#: whether it goes down (parent to children) or up (child to parent).
Step = tuple[int, int, int, int, Edge, bool]


def relevant_steps(closure: Closure, node: int | None) -> tuple[set[tuple[int, int]], list[Step]]:
    """The states ``(node, d)`` reachable from the seeds that can reach ``node`` (any state
    when None), and the steps between them. A table's rows depend only on these: reading a
    leaf table (an incident's narratives) needs the walk down to it, not every parent of every
    row found on the way."""
    index = {t.name: i for i, t in enumerate(closure.tables)}
    every: list[Step] = []
    for e in closure.edges:
        child, parent = index[e.child], index[e.parent]
        every.append((parent, 1, child, 1, e, True))
        every.append((child, 0, parent, 0, e, False))
        every.append((child, 1, parent, 0, e, False))

    def walk(start: set[tuple[int, int]], forward: bool) -> set[tuple[int, int]]:
        seen, todo = set(start), list(start)
        while todo:
            state = todo.pop()
            for frm, need, to, d, _, _ in every:
                a, b = ((frm, need), (to, d)) if forward else ((to, d), (frm, need))
                if a == state and b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen

    reached = walk({(i, int(down)) for i, _, down in closure.seeds}, True)
    if node is not None:
        reached &= walk({(node, 0), (node, 1)}, False)
    steps: list[Step] = []
    for frm, need, to, d, e, down in every:
        if (frm, need) in reached and (to, d) in reached:
            # An up step leaves from rows of either d: one branch for both when both count.
            if not down and need == 1 and (frm, 0) in reached:
                continue
            steps.append((frm, need, to, d, e, down))
    return reached, steps


def _direct(cl: Closure, e: Edge) -> bool:
    """Whether the parent's key is what the child's foreign-key columns hold, as they are."""
    pkey = cl.keys[cl.index(e.parent)]
    return not any(e.paths) and set(pkey) == set(e.ref_columns) and len(pkey) == len(e.ref_columns)


class _Render:
    """The parts of a segment's query for one closure, in one dialect, binding values as they
    are written (the order of the text)."""

    def __init__(self, cl: Closure, dialect: SegmentSQL, bind: Callable[[Any], str]) -> None:
        self.cl, self.dialect, self.bind, self.q = cl, dialect, bind, dialect.quote
        self.cols = {t.name: {c.name: c for c in t.columns} for t in cl.tables}
        self.key_names = [f"k{i + 1}" for i in range(cl.width)]

    def seed(self, i: int, row_filter: RowFilter, columns: str) -> str:
        """``SELECT columns`` of the seed rows of node ``i`` (aliased ``s``): its filter's, those
        the sample keeps."""
        q, dialect, bind, cl = self.q, self.dialect, self.bind, self.cl
        cond = render_filter(row_filter, lambda name: "s." + q(name), bind) or "1 = 1"
        select = f"SELECT {columns} FROM {dialect.table_name(cl.tables[i])} s WHERE {cond}"
        sample = cl.sample
        if sample is not None:
            # Each use binds the seed again: placeholders are filled in the order they appear.
            key_exprs = [f"s.{q(c)}" for c in cl.keys[i]]
            if sample.percent is not None:
                select += f" AND {dialect.bucket(bind(sample.seed), key_exprs)} < {bind(sample.threshold)}"
            if sample.limit is not None:
                order = ", ".join([dialect.bucket(bind(sample.seed), key_exprs), *key_exprs])
                select = f"SELECT * FROM ({select} ORDER BY {order} LIMIT {int(sample.limit)}) s{i}"
        return select

    def keys_of(self, i: int, alias: str) -> list[str]:
        t = self.cl.tables[i]
        out = [self.dialect.to_key(f"{alias}.{self.q(c)}", self.cols[t.name][c]) for c in self.cl.keys[i]]
        return out + [self.dialect.null_key()] * (self.cl.width - len(out))

    def value(self, e: Edge, i: int, alias: str) -> str:
        """The child's foreign-key value ``i``: its column, or the text at its JSON path."""
        expr = f"{alias}.{self.q(e.columns[i])}"
        return self.dialect.json_text(expr, e.path(i)) if e.path(i) else expr

    def when(self, e: Edge, alias: str) -> str:
        """`` AND`` the conditions under which the child's row holds the key (polymorphic)."""
        return "".join(f" AND {alias}.{self.q(c)} = {self.bind(v)}" for c, v in e.when)

    def cap(self, e: Edge) -> str:
        """`` AND`` the child ``x`` is among the first n children of its parent through ``e``
        (the segment file's caps; by key order): fewer than n of its siblings have a smaller
        key. A correlated count, which each dialect evaluates through the foreign key's index
        where there is one; MySQL takes no LIMIT inside IN."""
        n = self.cl.cap(e)
        if n is None:
            return ""
        q, child = self.q, self.cl.index(e.child)
        key = self.cl.keys[child]
        same = " AND ".join(f"{self.value(e, i, 'y')} = {self.value(e, i, 'x')}"
                            for i in range(len(e.columns)))
        smaller = (f"y.{q(key[0])} < x.{q(key[0])}" if len(key) == 1 else
                   f"({', '.join('y.' + q(c) for c in key)}) < ({', '.join('x.' + q(c) for c in key)})")
        return (f" AND (SELECT count(*) FROM {self.dialect.table_name(self.cl.tables[child])} y WHERE {same}"
                f"{self.when(e, 'y')} AND {smaller}) < {self.bind(n)}")

    def matches(self, e: Edge) -> str:
        """The child ``x`` references the parent ``p`` (a JSON value as text, against the
        parent's column as text)."""
        parent = self.cols[e.parent]
        return " AND ".join(
            f"{self.value(e, i, 'x')} = "
            + (self.dialect.to_key(f"p.{self.q(r)}", parent[r]) if e.path(i) else f"p.{self.q(r)}")
            for i, r in enumerate(e.ref_columns))

    def from_front(self, node: int, alias: str) -> str:
        t = self.cl.tables[node]
        return " AND ".join(
            f"{alias}.{self.q(c)} = {self.dialect.from_key(f'f.k{j + 1}', self.cols[t.name][c])}"
            for j, c in enumerate(self.cl.keys[node]))

    def select(self, to: int, d: int, keys: list[str], joins: str, where: str) -> str:
        return (f"SELECT {to} AS t, {d} AS d, "
                + ", ".join(f"{k} AS {n}" for k, n in zip(keys, self.key_names))
                + f" FROM {joins} WHERE {where}")

    def branch(self, step: Step, front: str) -> str:
        """One step as a join from the rows found last (``front``, aliased ``f``) through the
        table's index: down, the children whose foreign key holds a found parent's key; up,
        the parent key that a found child's foreign key holds. Only the rows found, never a
        whole edge's pairs."""
        q, cl, dialect = self.q, self.cl, self.dialect
        frm, need, to, d, e, down = step
        child, parent = cl.index(e.child), cl.index(e.parent)
        ctab, ptab = cl.tables[child], cl.tables[parent]
        guard = f"f.t = {frm}" + (" AND f.d = 1" if need else "")
        direct = _direct(cl, e)
        ref = dict(zip(e.ref_columns, e.columns))  # parent column -> child column
        if down:
            if direct:
                on = " AND ".join(
                    f"x.{q(ref[c])} = {dialect.from_key(f'f.k{j + 1}', self.cols[ptab.name][c])}"
                    for j, c in enumerate(cl.keys[parent]))
                joins = f"{front} JOIN {dialect.table_name(ctab)} x ON {on}{self.when(e, 'x')}"
            else:
                joins = (f"{front} JOIN {dialect.table_name(ptab)} p ON {self.from_front(parent, 'p')} "
                         f"JOIN {dialect.table_name(ctab)} x ON {self.matches(e)}{self.when(e, 'x')}")
            return self.select(to, d, self.keys_of(child, "x"), joins, guard + self.cap(e))
        joins = f"{front} JOIN {dialect.table_name(ctab)} x ON {self.from_front(child, 'x')}"
        if direct:
            # The parent's key is the child's foreign key: no need to visit the parent (a key
            # no parent holds selects nothing where the parent's rows are read).
            keys = [dialect.to_key(f"x.{q(ref[c])}", self.cols[ptab.name][c]) for c in cl.keys[parent]]
            keys += [dialect.null_key()] * (cl.width - len(keys))
            where = guard + "".join(f" AND x.{q(c)} IS NOT NULL" for c in e.columns) + self.when(e, "x")
            return self.select(to, d, keys, joins, where)
        when = self.when(e, "x")
        joins += f" JOIN {dialect.table_name(ptab)} p ON {self.matches(e)}"
        return self.select(to, d, self.keys_of(parent, "p"), joins, guard + when)

    def pairs(self, steps: list[Step]) -> str:
        """Every edge's pairs of keys, listed once per query, which each step of the recursion
        joins with the rows found last: for MariaDB, whose optimizer asked for 3.4 GB with one
        recursive select per edge (14 of them; the demo has 60)."""
        cl = self.cl
        return " UNION ALL ".join(
            f"SELECT {frm} AS st, {need} AS sd, "
            + ", ".join(f"{k} AS s{j + 1}" for j, k in enumerate(self.keys_of(frm, 'p' if down else 'x')))
            + f", {to} AS t, {d} AS d, "
            + ", ".join(f"{k} AS {n}" for k, n in zip(self.keys_of(to, 'x' if down else 'p'), self.key_names))
            + f" FROM {self.dialect.table_name(cl.tables[cl.index(e.parent)])} p "
            + f"JOIN {self.dialect.table_name(cl.tables[cl.index(e.child)])} x "
            + f"ON {self.matches(e)}{self.when(e, 'x')}"
            + (f" WHERE 1 = 1{self.cap(e)}" if down else "")
            for frm, need, to, d, e, down in steps)
