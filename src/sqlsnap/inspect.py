"""What is in a snapshot, and what looks wrong: :func:`inspect`.

::

    report = sqlsnap.inspect("app.json.zst")
    print(report.to_markdown())      # a data dictionary; to_text() for a terminal, to_dict() for JSON

One pass over the rows, in file order (:func:`sqlsnap.open_snapshot`), holding per column a
few counters and bounded samples, never a table:

* per table the rows and the size of their JSON;
* per column the null share, the distinct count (exact up to :data:`EXACT_DISTINCT` values,
  then estimated from the :data:`KMV_K` smallest hashes, about 3 % off), min and max of
  numbers and dates, the most common values of columns with at most
  :data:`LOW_CARDINALITY` distinct values, the longest text;
* orphans: foreign-key values whose parent row is not in the snapshot, counted per key, with
  a few examples. This keeps the referenced keys in memory (about 100 bytes a key, as
  ``verify --integrity``);
* the foreign-key hierarchy as a tree from the root tables, empty tables and columns, and
  what the metadata says was left out or masked.

Values of masked or secret columns (a ``rule`` or ``secret`` in the metadata) are counted
but never shown.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
import xxhash

from .snapshot import open_snapshot
from .snapshot.integrity import Dangling, ForeignKeys

__all__ = ["EXACT_DISTINCT", "LOW_CARDINALITY", "ColumnReport", "InspectResult", "TableReport", "inspect"]

#: Distinct values counted exactly, per column, before the estimate takes over: 10k values of
#: about 100 bytes each is 1 MB a column at most.
EXACT_DISTINCT = 10_000
#: The k of the k-minimum-values estimate: its standard error is about 1/sqrt(k-2), 3 % at 1024.
KMV_K = 1024
#: Columns with at most this many distinct values get their most common values listed.
LOW_CARDINALITY = 20
#: Most common values shown per column, orphan examples per foreign key, characters of a value.
TOP_VALUES = 5
ORPHAN_EXAMPLES = 3
SHOWN_CHARS = 40

_ROW = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)
_ENCODE = msgspec.json.Encoder(decimal_format="number").encode
_DATE_TYPE = re.compile(r"date|time", re.IGNORECASE)
_HASH_SPACE = float(2**64)


@dataclass
class ColumnReport:
    name: str
    type: str
    nullable: bool
    rows: int = 0
    nulls: int = 0
    distinct: int = 0
    #: False when ``distinct`` is an estimate.
    distinct_exact: bool = True
    min: Any = None
    max: Any = None
    #: ``[(value, count)]``, most common first; only for low-cardinality columns.
    common: list[tuple[Any, int]] = field(default_factory=list)
    longest_text: int | None = None
    example: Any = None
    #: ``rule`` from the metadata (hash, mask, ...), or ``"secret"``: values are not shown.
    masked: str | None = None

    @property
    def null_share(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @property
    def empty(self) -> bool:
        return self.rows > 0 and self.nulls == self.rows

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable,
                               "nulls": self.nulls, "null_share": round(self.null_share, 4),
                               "distinct": self.distinct, "distinct_exact": self.distinct_exact}
        if self.masked:
            out["masked"] = self.masked
            return out
        if self.min is not None:
            out["min"], out["max"] = self.min, self.max
        if self.common:
            out["common"] = [{"value": v, "count": n} for v, n in self.common]
        if self.longest_text is not None:
            out["longest_text"] = self.longest_text
        if self.example is not None:
            out["example"] = self.example
        return out


@dataclass
class Orphans:
    table: str
    columns: list[str]
    ref_table: str
    ref_columns: list[str]
    count: int = 0
    examples: list[Dangling] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "columns": self.columns,
                "references": {"table": self.ref_table, "columns": self.ref_columns}, "count": self.count,
                "examples": [{"row": d.line, "values": d.values} for d in self.examples]}


@dataclass
class TableReport:
    name: str
    rows: int = 0
    bytes: int = 0
    columns: list[ColumnReport] = field(default_factory=list)
    primary_key: list[str] = field(default_factory=list)
    foreign_keys: list[dict[str, Any]] = field(default_factory=list)
    excluded_columns: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "bytes": self.bytes, "primary_key": self.primary_key,
                "foreign_keys": self.foreign_keys, "excluded_columns": self.excluded_columns,
                "columns": [c.to_dict() for c in self.columns]}


@dataclass
class InspectResult:
    snapshot: str
    metadata: dict[str, Any]
    tables: list[TableReport] = field(default_factory=list)
    orphans: list[Orphans] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def empty_tables(self) -> list[str]:
        return [t.name for t in self.tables if t.rows == 0]

    @property
    def empty_columns(self) -> list[str]:
        return [f"{t.name}.{c.name}" for t in self.tables for c in t.columns if c.empty]

    def tree(self) -> list[str]:
        """The foreign-key hierarchy, one line per table, indented under its parents. A table
        with several parents is drawn under the deepest (incidents under users, not under
        companies) and named ``(see PARENT)`` under the others."""
        names = [t.name for t in self.tables]
        parents: dict[str, list[str]] = {n: [] for n in names}
        for t in self.tables:
            for fk in t.foreign_keys:
                parent = fk["references"]["table"]
                if parent in parents and parent != t.name and parent not in parents[t.name]:
                    parents[t.name].append(parent)
        depth: dict[str, int] = {}

        def depth_of(name: str, path: frozenset[str]) -> int:
            if name not in depth:
                ups = [depth_of(p, path | {name}) + 1 for p in parents[name] if p not in path]
                depth[name] = max(ups, default=0)
            return depth[name]

        home = {n: max(parents[n], key=lambda p: (depth_of(p, frozenset({n})), p), default=None)
                for n in names}
        children: dict[str, list[str]] = {n: [] for n in names}
        for n in names:
            for p in parents[n]:
                children[p].append(n)
        lines: list[str] = []
        shown: set[str] = set()

        def walk(name: str, parent: str | None, level: int) -> None:
            if name in shown or (parent is not None and home[name] != parent):
                lines.append("  " * level + f"{name} (see {home[name] or name})")
                return
            shown.add(name)
            lines.append("  " * level + name)
            for child in sorted(children[name]):
                walk(child, name, level + 1)

        for name in sorted(n for n in names if not parents[n]):
            walk(name, None, 0)
        for name in names:  # tables only reachable through a cycle
            if name not in shown:
                walk(name, None, 0)
        return lines

    def left_out(self) -> list[str]:
        """What the metadata says was excluded or masked, one line each."""
        meta = self.metadata
        out = [f"table {name}: excluded" for name in meta.get("excluded_tables") or ()]
        for t in self.tables:
            for ex in t.excluded_columns:
                out.append(f"{t.name}.{ex.get('name')}: excluded ({ex.get('reason', '')})")
            for c in t.columns:
                if c.masked:
                    out.append(f"{t.name}.{c.name}: {c.masked}")
        for name, cond in (meta.get("filters") or {}).items():
            out.append(f"table {name}: rows filtered by {_ENCODE(cond).decode()}")
        return out

    def to_dict(self) -> dict[str, Any]:
        meta = self.metadata
        return {"snapshot": self.snapshot, "exported_at": meta.get("exported_at"),
                "source": meta.get("source"), "export_type": meta.get("export_type"),
                "total_rows": self.total_rows,
                "tables": [t.to_dict() for t in self.tables], "orphans": [o.to_dict() for o in self.orphans],
                "tree": self.tree(), "empty_tables": self.empty_tables, "empty_columns": self.empty_columns,
                "left_out": self.left_out()}

    def to_text(self) -> str:
        return _render_text(self)

    def to_markdown(self) -> str:
        return _render_markdown(self)


# -- the pass over the rows ---------------------------------------------------------------------


class _Distinct:
    """Distinct values: exact up to :data:`EXACT_DISTINCT`, then a k-minimum-values estimate
    (the k smallest 64-bit hashes of the values seen; n is about (k-1) / (k-th smallest)).
    Values are held as their 128-bit hashes, so a column of long texts costs the same as one
    of integers (collisions: about 1 in 10^29 at 10k values)."""

    __slots__ = ("exact", "heap", "members")

    def __init__(self) -> None:
        self.exact: set[int] | None = set()
        self.heap: list[int] = []  # negated: a max-heap of the k smallest hashes
        self.members: set[int] = set()

    def add(self, key: bytes) -> None:
        digest = xxhash.xxh3_128_intdigest(key)
        if self.exact is not None:
            self.exact.add(digest)
            if len(self.exact) > EXACT_DISTINCT:
                self.exact = None
        h = digest & 0xFFFF_FFFF_FFFF_FFFF
        if h in self.members:
            return
        if len(self.heap) < KMV_K:
            heapq.heappush(self.heap, -h)
            self.members.add(h)
        elif h < -self.heap[0]:
            self.members.discard(-heapq.heapreplace(self.heap, -h))
            self.members.add(h)

    def count(self) -> tuple[int, bool]:
        if self.exact is not None:
            return len(self.exact), True
        return round((KMV_K - 1) / ((-self.heap[0] + 1) / _HASH_SPACE)), False


class _ColumnStats:
    __slots__ = ("common", "dates", "distinct", "example", "longest", "max", "min", "nulls", "report")

    def __init__(self, report: ColumnReport) -> None:
        self.report = report
        self.nulls = 0
        self.distinct = _Distinct()
        self.common: dict[bytes, list[Any]] | None = {}
        self.min: Any = None
        self.max: Any = None
        self.longest: int | None = None
        self.example: Any = None
        self.dates = bool(_DATE_TYPE.search(report.type))

    def add(self, value: Any) -> None:
        if value is None:
            self.nulls += 1
            return
        if self.example is None:
            self.example = value
        key = _ENCODE(value)
        self.distinct.add(key)
        if self.common is not None:
            entry = self.common.get(key)
            if entry is not None:
                entry[1] += 1
            elif len(self.common) < LOW_CARDINALITY:
                self.common[key] = [value, 1]
            else:
                self.common = None
        if isinstance(value, str):
            if self.longest is None or len(value) > self.longest:
                self.longest = len(value)
            if not self.dates:
                return
        elif isinstance(value, bool) or not isinstance(value, int | Decimal):
            return
        if self.min is None or _less(value, self.min):
            self.min = value
        if self.max is None or _less(self.max, value):
            self.max = value

    def finish(self, rows: int) -> ColumnReport:
        r = self.report
        r.rows, r.nulls = rows, self.nulls
        r.distinct, r.distinct_exact = self.distinct.count()
        r.min, r.max = self.min, self.max
        r.longest_text = None if self.dates else self.longest
        if self.common is not None and any(n > 1 for _, n in self.common.values()):
            ranked = sorted(self.common.values(), key=lambda e: (-e[1], _ENCODE(e[0])))
            r.common = [(v, n) for v, n in ranked[:TOP_VALUES]]
        if r.masked is None:
            r.example = _short(self.example)
        else:
            r.min = r.max = r.example = None
            r.common = []
        return r


def _column_report(column: dict[str, Any]) -> ColumnReport:
    masked = column.get("rule") or ("secret" if column.get("secret") else None)
    return ColumnReport(column["name"], str(column.get("type", "")), bool(column.get("nullable", True)),
                        masked=masked)


def _less(a: Any, b: Any) -> bool:
    try:
        return bool(a < b)
    except TypeError:  # a number and a date string in one column: keep what came first
        return False


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return value[:SHOWN_CHARS] + "..."
    if isinstance(value, dict | list):
        return _short(_ENCODE(value).decode())
    return value


class _Orphans(ForeignKeys):
    """verify's integrity check, counting per foreign key."""

    def __init__(self, tables: dict[str, Any]) -> None:
        super().__init__(tables, max_listed=0)
        self.by_key: dict[tuple[str, tuple[str, ...], str], Orphans] = {}

    def _report(self, table: str, line: int, fk: tuple[list[str], str, list[str]], values: list[Any],
                reason: str = "") -> None:
        self.total += 1
        key = (table, tuple(fk[0]), fk[1])
        entry = self.by_key.get(key)
        if entry is None:
            entry = self.by_key[key] = Orphans(table, fk[0], fk[1], fk[2])
        entry.count += 1
        if len(entry.examples) < ORPHAN_EXAMPLES:
            entry.examples.append(Dangling(table, line, fk[0], values, fk[1], fk[2], reason))


def inspect(snapshot: str, *, identities: Sequence[Any] = (),
            s3_endpoint: str | None = None) -> InspectResult:
    """Read ``snapshot`` once and describe it (the module docstring says what, and in how
    much memory). Raises what :func:`sqlsnap.open_snapshot` raises for a snapshot that cannot
    be read, or :class:`sqlsnap.VerifyError` for a damaged one."""
    with open_snapshot(snapshot, identities=identities, s3_endpoint=s3_endpoint) as snap:
        meta = snap.metadata
        tables_meta: dict[str, Any] = meta.get("tables") or {}
        result = InspectResult(snapshot=snapshot, metadata=meta)
        orphans = _Orphans(tables_meta)
        for name, rows in snap.tables(raw=True):
            info = tables_meta.get(name, {})
            report = TableReport(name, primary_key=list(info.get("primary_key") or []),
                                 foreign_keys=list(info.get("foreign_keys") or []),
                                 excluded_columns=list(info.get("excluded_columns") or []))
            stats = [_ColumnStats(_column_report(c)) for c in info.get("columns") or []]
            names = [s.report.name for s in stats]
            checks = orphans.wants(name)
            n = size = 0
            for raw in rows:
                n += 1
                size += len(raw) + 1  # the row's line with its newline, as in the .jsonl file
                row = _ROW.decode(raw)
                for column, stat in zip(names, stats, strict=True):
                    stat.add(row.get(column))
                if checks:
                    orphans.row(name, n, row)
            orphans.table_done(name)
            report.rows, report.bytes = n, size
            report.columns = [s.finish(n) for s in stats]
            result.tables.append(report)
        orphans.finish()
        result.orphans = sorted(orphans.by_key.values(), key=lambda o: (o.table, o.columns))
    return result


# -- rendering ------------------------------------------------------------------------------------


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _value(v: Any) -> str:
    if isinstance(v, str):
        return str(_short(v))
    return _ENCODE(v).decode() if not isinstance(v, Decimal) else format(v, "f")


def _distinct(c: ColumnReport) -> str:
    return f"{c.distinct:,}" if c.distinct_exact else f"~{c.distinct:,}"


def _range(c: ColumnReport) -> str:
    return "" if c.min is None else f"{_value(c.min)} .. {_value(c.max)}"


def _values(c: ColumnReport) -> str:
    if c.masked:
        return f"({c.masked}: not shown)"
    if c.common:
        return ", ".join(f"{_value(v)} ({n:,})" for v, n in c.common)
    return "" if c.example is None else f"e.g. {_value(c.example)}"


def _keys_text(t: TableReport) -> list[str]:
    return [f"{', '.join(fk['columns'])} -> {fk['references']['table']}"
            f"({', '.join(fk['references']['columns'])})" for fk in t.foreign_keys]


def _head(result: InspectResult) -> list[str]:
    meta = result.metadata
    source = meta.get("source") or {}
    return [f"Snapshot {result.snapshot}: {len(result.tables)} tables, {result.total_rows:,} rows, "
            f"exported {meta.get('exported_at')} from {source.get('dialect')} database "
            f"{source.get('database')} ({meta.get('export_type', 'full')})"]


def _render_text(result: InspectResult) -> str:
    out = _head(result) + [""]
    for t in result.tables:
        out.append(f"{t.name}: {t.rows:,} rows, {_human(t.bytes)}"
                   + (f"; primary key ({', '.join(t.primary_key)})" if t.primary_key else ""))
        for fk in _keys_text(t):
            out.append(f"  foreign key {fk}")
        width = max([len(c.name) for c in t.columns] + [6])
        for c in t.columns:
            parts = [f"nulls {c.null_share:.0%}", f"distinct {_distinct(c)}"]
            if _range(c):
                parts.append(_range(c))
            if c.longest_text is not None and not c.masked:
                parts.append(f"longest {c.longest_text:,} chars")
            values = _values(c)
            tail = f"; {values}" if values else ""
            out.append(f"  {c.name:<{width}}  {c.type:<24} {'; '.join(parts)}{tail}")
        out.append("")
    out.append("Foreign-key tree:")
    out += [f"  {line}" for line in result.tree()]
    out.append("")
    out.append("Orphans:" if result.orphans else "Orphans: none")
    for o in result.orphans:
        examples = "; ".join(str(d.values if len(d.values) > 1 else d.values[0]) + f" (row {d.line})"
                             for d in o.examples)
        out.append(f"  {o.table}({', '.join(o.columns)}) -> {o.ref_table}: {o.count:,} without parent, "
                   f"e.g. {examples}")
    out.append(f"Empty tables: {', '.join(result.empty_tables) or 'none'}")
    out.append(f"Empty columns: {', '.join(result.empty_columns) or 'none'}")
    left = result.left_out()
    out.append("Left out or masked:" if left else "Left out or masked: nothing")
    out += [f"  {line}" for line in left]
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _render_markdown(result: InspectResult) -> str:
    meta = result.metadata
    source = meta.get("source") or {}
    out = [f"# Data dictionary: {source.get('database')}", "",
           f"Generated by `sqlsnap inspect` from a snapshot of the {source.get('dialect')} database "
           f"`{source.get('database')}` taken {meta.get('exported_at')} ({meta.get('export_type', 'full')} "
           f"export): {len(result.tables)} tables, {result.total_rows:,} rows.", "",
           "## Tables", "", "| table | rows | size | primary key | references |", "|---|---:|---:|---|---|"]
    for t in result.tables:
        refs = ", ".join(sorted({fk["references"]["table"] for fk in t.foreign_keys}))
        out.append(f"| [{t.name}](#{t.name}) | {t.rows:,} | {_human(t.bytes)} | {', '.join(t.primary_key)} "
                   f"| {refs} |")
    out += ["", "## Relationships", "", "Each table under a table it references (foreign keys).", "", "```"]
    out += result.tree()
    out += ["```", ""]
    for t in result.tables:
        out += [f"### {t.name}", "", f"{t.rows:,} rows, {_human(t.bytes)} of JSON."]
        if t.primary_key:
            out.append(f"Primary key: {', '.join(t.primary_key)}.")
        for fk in _keys_text(t):
            out.append(f"Foreign key: {fk}.")
        out += ["", "| column | type | null | distinct | range | values |", "|---|---|---:|---:|---|---|"]
        for c in t.columns:
            null = f"{c.null_share:.0%}" + ("" if c.nullable else " (not null)")
            out.append(f"| {_cell(c.name)} | {_cell(c.type)} | {null} | {_distinct(c)} | {_cell(_range(c))} "
                       f"| {_cell(_values(c))} |")
        out.append("")
    out += ["## Orphans", ""]
    if not result.orphans:
        out.append("Every foreign-key value has its parent row in the snapshot.")
    for o in result.orphans:
        examples = ", ".join(f"row {d.line}: {_value(d.values if len(d.values) > 1 else d.values[0])}"
                             for d in o.examples)
        out.append(f"- {o.table}({', '.join(o.columns)}) -> {o.ref_table}: {o.count:,} rows without a parent "
                   f"({examples})")
    out += ["", "## Empty tables and columns", "",
            f"- Empty tables: {', '.join(result.empty_tables) or 'none'}",
            f"- Columns always null: {', '.join(result.empty_columns) or 'none'}", "",
            "## Left out or masked", ""]
    left = result.left_out()
    out += [f"- {line}" for line in left] or ["Nothing: every column of every table is as stored."]
    return "\n".join(out) + "\n"
