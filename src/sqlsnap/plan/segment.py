"""Segments closed under foreign keys (docs/segments.md), as data: which rows a reader reads
when the export is "these seed rows and everything that belongs to them".

The rule, from the seed rows (the rows of each filtered table that its row filter selects):

* **children**: a row that references an included row through a foreign key is included,
  transitively (sites, users, incidents, narratives of a company);
* **parents**: a row that an included row references is included (the prompt an AI call
  used, the user of another company who took part in an incident);
* but not the **children of rows reached only as parents**: a shared lookup row or another
  tenant's user brings in neither the other rows that reference it nor that tenant.

Every foreign-key value of the result then has its parent in it (the segment is closed).

The closure is computed inside the database, in the export's one snapshot, by a recursive
query over ``(node, down, key)`` rows, one branch per foreign-key edge and direction; no key
set is held in Python and nothing is written (it runs on a read-only replica). This module
holds only the dialect-neutral description: :class:`Closure` (the graph and the seeds) and
:class:`SegmentRead` (one table's rows in it); each source renders it in its own SQL
(:func:`sqlsnap.sources.base.render_segment`). The plan also walks the same graph over
tables, to tell which edge first reaches each table (:func:`reach`).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ..errors import UsageError
from ..model import Table
from .filters import RowFilter


def parse_when(value: str | date | None, option: str) -> date | datetime | None:
    """``--since``/``--until``: ``2026-10-01`` (a date) or ``2026-10-01T12:00:00`` (a time)."""
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a date; write 2026-10-01 or 2026-10-01T12:00:00") \
            from None


#: A sample's buckets: a row is in a ``p`` percent sample when the hash of its key and the
#: seed, modulo this, is below ``p`` times ``BUCKETS / 100`` (a resolution of 0.0001%).
BUCKETS = 1_000_000


@dataclass(frozen=True)
class Sample:
    """``--sample PERCENT`` / ``--limit N`` with ``--seed``: which of the seed rows are kept,
    by a hash of each row's key and the seed computed in the database, so the same seed
    picks the same rows of the same data (the hash differs between dialects)."""

    percent: Decimal | None = None
    limit: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.percent is not None and not Decimal(0) < self.percent <= Decimal(100):
            raise UsageError(f"--sample {self.percent}%: give a percentage above 0 and at most 100, e.g. 5%")
        if self.limit is not None and self.limit < 1:
            raise UsageError("--limit must be at least 1")

    @property
    def threshold(self) -> int:
        return int((self.percent or Decimal(100)) * BUCKETS / 100)

    def to_json(self) -> dict[str, Any]:
        return {"percent": None if self.percent is None else str(self.percent), "limit": self.limit,
                "seed": self.seed}

    @classmethod
    def parse(cls, sample: str | None, limit: int | None, seed: int | None) -> Sample | None:
        """``"5%"`` or ``"5"``, a row limit and a seed (0 when not given)."""
        if sample is None and limit is None:
            if seed is not None:
                raise UsageError("--seed chooses the rows of --sample or --limit; give one of them")
            return None
        percent = None
        if sample is not None:
            try:
                percent = Decimal(str(sample).strip().removesuffix("%"))
            except ArithmeticError:
                raise UsageError(f"--sample {sample!r} is not a percentage; write e.g. 5% or 0.5%") from None
            if not percent.is_finite():
                raise UsageError(f"--sample {sample!r} is not a percentage; write e.g. 5% or 0.5%")
        return cls(percent, limit, seed or 0)


#: A JSON path a segment file may give for a key inside a JSON value: ``$`` then object keys
#: (``.name``) and array positions (``[0]``), nothing else, so that it can be written into
#: the SQL of every dialect as it is.
JSON_PATH = re.compile(r"\$(\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]+\])+")


@dataclass(frozen=True)
class Edge:
    """One foreign key: ``child.columns`` references ``parent.ref_columns``. A segment file's
    declared key may read a column's value at a JSON path (``paths``, one per column, ``""``
    for the column itself) and hold only for child rows where ``when``'s columns have these
    values (a polymorphic ``(type, id)`` pair: ``target_id`` references incidents where
    ``target_type`` is ``'incident'``)."""

    child: str
    columns: tuple[str, ...]
    parent: str
    ref_columns: tuple[str, ...]
    paths: tuple[str, ...] = ()
    when: tuple[tuple[str, Any], ...] = ()

    def path(self, i: int) -> str:
        return self.paths[i] if self.paths else ""

    @property
    def name(self) -> str:
        """``TABLE.COLUMN[,COLUMN]``: how a segment file names the edge (skip, caps)."""
        return f"{self.child}.{','.join(self.columns)}"

    @property
    def plain(self) -> bool:
        """A key the child's own columns hold as they are, for every row."""
        return not any(self.paths) and not self.when

    @property
    def label(self) -> str:
        """``incidents.company_id -> companies.id`` (``events.payload$.node.id``,
        ``comments.target_id[target_type='incident']``)."""
        cols = ",".join(c + self.path(i) for i, c in enumerate(self.columns))
        when = "".join(f"[{c}={v!r}]" for c, v in self.when)
        return f"{self.child}.{cols}{when} -> {self.parent}.{','.join(self.ref_columns)}"


@dataclass(frozen=True)
class Reach:
    """How the plan's walk over tables first reached a table: ``seed``, ``child`` (rows that
    reference included rows) or ``parent`` (rows that included rows reference), and through
    which edge (None for a seed)."""

    how: str
    edge: Edge | None = None

    def describe(self) -> str:
        if self.edge is None:
            return "seed (--where)"
        return f"{self.how} via {self.edge.label}"

    def to_json(self) -> dict[str, Any]:
        return {"as": self.how, "edge": None if self.edge is None else self.edge.label}


@dataclass(frozen=True)
class Closure:
    """The graph a segment is closed over and its seeds. ``tables`` are the exported tables
    (a node is its index there), ``keys`` each table's key columns, ``edges`` the foreign keys
    between them, ``seeds`` the seed tables' indices, row filters (no condition: every row)
    and whether their children are followed (``--where``) or only their parents (a date
    range, ``--tables ... --closed``)."""

    tables: tuple[Table, ...]
    keys: tuple[tuple[str, ...], ...]
    edges: tuple[Edge, ...]
    seeds: tuple[tuple[int, RowFilter, bool], ...]
    #: Which of the seed rows are kept (None: all).
    sample: Sample | None = None
    #: The segment file's caps: ``TABLE.COLUMN[,COLUMN]`` of an edge, and the most children
    #: one parent brings through it.
    caps: tuple[tuple[str, int], ...] = ()

    def cap(self, edge: Edge) -> int | None:
        """The most children one parent row brings through ``edge`` (None: all of them)."""
        return dict(self.caps).get(edge.name)

    def index(self, name: str) -> int:
        return next(i for i, t in enumerate(self.tables) if t.name == name)

    @property
    def width(self) -> int:
        """The number of key columns of the recursive query: the widest key."""
        return max((len(k) for k in self.keys), default=1)


@dataclass(frozen=True)
class SegmentRead:
    """The rows of ``closure.tables[node]`` in the closure; ``parents_only``: only those
    reached only as parents (of another tenant, where the table is also reached as a child);
    ``seeds_only``: only its seed rows (after the sample)."""

    closure: Closure
    node: int
    parents_only: bool = False
    seeds_only: bool = False

    @property
    def key(self) -> tuple[str, ...]:
        return self.closure.keys[self.node]


def key_columns(table: Table, edges: Sequence[Edge]) -> tuple[str, ...]:
    """What identifies a row in the closure: the primary key; a table without one is keyed by
    the columns its foreign keys use (with a polymorphic key's type columns) and the columns
    other tables reference (rows that agree on those are in or out together, which the closure
    rules cannot tell apart anyway). A JSON value is no key: a table whose only keys are JSON
    paths has none, and is not followed."""
    if table.primary_key:
        return tuple(table.primary_key)
    cols: list[str] = []
    for e in edges:
        used = ((*e.columns, *(c for c, _ in e.when)) if not any(e.paths) else ()) \
            if e.child == table.name else e.ref_columns if e.parent == table.name else ()
        cols += [c for c in used if c not in cols]
    return tuple(cols)


def build_closure(tables: Sequence[Table], where: Mapping[str, RowFilter],
                  parent_seeds: Mapping[str, RowFilter] | None = None,
                  sample: Sample | None = None, rules: SegmentRules | None = None) -> Closure:
    """The closure of ``where``'s seeds (children and parents followed) and of
    ``parent_seeds`` (parents only) over the foreign keys among ``tables`` (the exported
    ones: a foreign key to a table left out is not followed)."""
    parent_seeds = parent_seeds or {}
    rules = rules or SegmentRules()
    # Lookup tables are read whole, so they are no node of the closure: no edge into or out of
    # them needs following.
    ordered = tuple(sorted((t for t in tables if t.name not in rules.lookups), key=lambda t: t.name))
    names = {t.name for t in ordered}
    declared = [Edge(t.name, tuple(fk.columns), fk.ref_table, tuple(fk.ref_columns))
                for t in ordered for fk in t.foreign_keys] + list(rules.foreign_keys)
    edges = tuple(e for e in declared if e.child in names and e.parent in names and not rules.skips(e))
    keys = tuple(key_columns(t, edges) for t in ordered)
    index = {t.name: i for i, t in enumerate(ordered)}
    # A table without any key (no primary key, no foreign key of its own that is no JSON path)
    # cannot tell its rows apart: no edge leads into or out of it, and it holds no row of the
    # segment.
    edges = tuple(e for e in edges if keys[index[e.child]] and keys[index[e.parent]])
    for name in [*where, *parent_seeds]:
        if name not in index:
            raise UsageError(f"{name} is a lookup of the segment file, taken whole; it cannot hold the seeds "
                             "too: remove it from lookups", table=name)
        if not keys[index[name]]:
            raise UsageError(f"--where on {name}: the table has no primary key and no foreign key, so its "
                             "rows cannot be followed; add a primary key or use --no-closure", table=name)
    seeds = tuple(sorted([(index[name], f, True) for name, f in where.items()]
                         + [(index[name], f, False) for name, f in parent_seeds.items()], key=lambda s: s[0]))
    return Closure(ordered, keys, edges, seeds, sample, rules.caps)


def reach(closure: Closure) -> tuple[dict[str, Reach], set[str]]:
    """Walk the tables as the closure walks rows, breadth first: the first edge that reaches
    each table (tables not in the result cannot hold a row of the segment), and the tables
    reached as children (their rows reached only as parents belong to someone else)."""
    first: dict[str, Reach] = {}
    seen: set[tuple[str, bool]] = set()
    queue: deque[tuple[str, bool]] = deque()
    for i, _, down in closure.seeds:
        name = closure.tables[i].name
        first.setdefault(name, Reach("seed"))
        queue.append((name, down))
        seen.add((name, down))
    while queue:
        name, down = queue.popleft()
        steps: list[tuple[str, bool, Reach]] = []
        if down:
            steps += [(e.child, True, Reach("child", e)) for e in closure.edges if e.parent == name]
        steps += [(e.parent, False, Reach("parent", e)) for e in closure.edges if e.child == name]
        for target, target_down, how in steps:
            first.setdefault(target, how)
            if (target, target_down) not in seen:
                seen.add((target, target_down))
                queue.append((target, target_down))
    return first, {name for name, down in seen if down}


#: Keys of rows reached only as parents listed per table in the metadata; the count is
#: always given. A tenant's export normally has a handful; 100 keeps the head of the file
#: short when it does not.
MAX_LISTED_KEYS = 100


@dataclass
class SegmentPlan:
    """The plan's part of a segment closed under foreign keys: the closure, how the walk over
    tables reached each table, and, once read from the snapshot (``sqlsnap plan`` and the
    export fill them), rows per table, seed rows, and the rows reached only as parents in
    tables also reached as children: another tenant's rows that this one references."""

    closure: Closure
    reached: dict[str, Reach]
    #: Tables reached as children (downwards): rows of theirs reached only as parents belong
    #: to someone else, and are listed.
    down: set[str]
    rows: dict[str, int] | None = None
    seeds: dict[str, int] | None = None
    cross_parents: dict[str, dict[str, Any]] | None = None
    #: Tables read whole (the segment file's lookups).
    lookups: list[str] = field(default_factory=list)

    def reads(self, name: str) -> bool:
        """Whether ``name``'s rows are the closure's (not a lookup read whole)."""
        return name not in self.lookups

    @classmethod
    def of(cls, tables: Sequence[Table], where: Mapping[str, RowFilter],
           parent_seeds: Mapping[str, RowFilter] | None = None, sample: Sample | None = None,
           rules: SegmentRules | None = None) -> SegmentPlan:
        closure = build_closure(tables, where, parent_seeds, sample, rules)
        lookups = [t.name for t in tables if rules is not None and t.name in rules.lookups]
        reached, down = reach(closure)
        return cls(closure, reached, down, lookups=lookups)

    def read(self, name: str, parents_only: bool = False, seeds_only: bool = False) -> SegmentRead:
        return SegmentRead(self.closure, self.closure.index(name), parents_only, seeds_only)

    def to_json(self) -> dict[str, Any]:
        """The metadata's ``segment`` object (and the plan's)."""
        return {
            "closed": True,
            "seeds": dict(sorted((self.seeds or {}).items())),
            **({"sample": self.closure.sample.to_json()} if self.closure.sample is not None else {}),
            "reached_by": {t.name: self.reached[t.name].to_json() for t in self.closure.tables
                           if t.name in self.reached},
            "not_reached": [t.name for t in self.closure.tables if t.name not in self.reached],
            **({"lookups": list(self.lookups)} if self.lookups else {}),
            "cross_tenant_parents": dict(sorted((self.cross_parents or {}).items())),
        }


@dataclass(frozen=True)
class SegmentRules:
    """A segment file's ``[segment]`` table (docs/segments.md): foreign keys the schema lacks,
    foreign keys not to follow, and lookup tables taken whole (the edges into them need no
    following: every row is there)."""

    foreign_keys: tuple[Edge, ...] = ()
    skip: tuple[str, ...] = ()
    lookups: tuple[str, ...] = ()
    #: ``(TABLE.COLUMN[,COLUMN], n)``: through that edge, a parent brings at most n children.
    caps: tuple[tuple[str, int], ...] = ()
    path: str | None = None

    @classmethod
    def load(cls, path: str) -> SegmentRules:
        import tomllib

        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            raise UsageError(f"segment file {path} does not exist; check the path given to --segment-file") \
                from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"cannot read segment file {path}: {exc}; it must be TOML with a [segment] "
                             "table") from None
        seg = doc.get("segment")
        if not isinstance(seg, dict):
            raise UsageError(f"segment file {path} has no [segment] table; see docs/segments.md")
        return cls.parse(seg, path)

    @classmethod
    def parse(cls, seg: Mapping[str, Any], path: str) -> SegmentRules:
        """A ``[segment]`` table, of a segment file or of the policy file (``path`` names it in
        errors)."""
        unknown = sorted(set(seg) - {"foreign_keys", "skip", "lookups", "caps"})
        if unknown:
            raise UsageError(f"{path}: unknown key {unknown[0]!r} in [segment]; valid ones: caps, "
                             "foreign_keys, lookups, skip")
        edges = []
        for i, fk in enumerate(seg.get("foreign_keys", [])):
            valid = {"table", "columns", "references", "ref_columns", "json_paths", "when"}
            unknown = sorted(set(fk) - valid) if isinstance(fk, dict) else []
            if unknown:
                raise UsageError(f"{path}: foreign_keys[{i}] has an unknown key {unknown[0]!r}; valid ones: "
                                 "columns, json_paths, ref_columns, references, table, when")
            try:
                when = fk.get("when", {})
                if not isinstance(when, dict) or \
                        not all(isinstance(v, str | int | bool) for v in when.values()):
                    raise TypeError
                edge = Edge(str(fk["table"]), tuple(map(str, fk["columns"])), str(fk["references"]),
                            tuple(map(str, fk["ref_columns"])), tuple(map(str, fk.get("json_paths", ()))),
                            tuple(sorted((str(c), v) for c, v in when.items())))
            except (KeyError, TypeError, AttributeError):
                raise UsageError(f"{path}: foreign_keys[{i}] needs table, columns, references and "
                                 'ref_columns, e.g. { table = "documents", columns = ["owner_id"], '
                                 'references = "users", ref_columns = ["id"] } (json_paths: a list of '
                                 'paths such as "$.owner.id"; when: a table of column = text or number)') \
                    from None
            if len(edge.columns) != len(edge.ref_columns) or not edge.columns:
                raise UsageError(f"{path}: foreign_keys[{i}] has {len(edge.columns)} columns and "
                                 f"{len(edge.ref_columns)} ref_columns; give as many of each")
            if edge.paths and len(edge.paths) != len(edge.columns):
                raise UsageError(f"{path}: foreign_keys[{i}] has {len(edge.paths)} json_paths for "
                                 f"{len(edge.columns)} columns; give one per column (\"\" for a column "
                                 "read as is)")
            bad = next((p for p in edge.paths if p and not JSON_PATH.fullmatch(p)), None)
            if bad is not None:
                raise UsageError(f"{path}: foreign_keys[{i}]: json path {bad!r} is not of the form $.key, "
                                 "$.key.key or $.key[0] (letters, digits and _ in keys)")
            edges.append(edge)
        caps: list[tuple[str, int]] = []
        for i, cap in enumerate(seg.get("caps", [])):
            n: Any = cap.get("children") if isinstance(cap, dict) else None
            counted = isinstance(n, int) and not isinstance(n, bool) and n >= 1
            if not isinstance(cap, dict) or set(cap) != {"edge", "children"} \
                    or not isinstance(cap["edge"], str) or not counted:
                raise UsageError(f"{path}: caps[{i}] needs edge and children, e.g. "
                                 '{ edge = "debug_logs.company_id", children = 100 } (children at least 1)')
            caps.append((cap["edge"], n))
        return cls(tuple(edges), tuple(map(str, seg.get("skip", []))),
                   tuple(map(str, seg.get("lookups", []))), caps=tuple(caps), path=path)

    def check(self, tables: Mapping[str, Table]) -> None:
        """Every table and column named exists (with the valid names when not)."""
        where = self.path or "segment file"

        def column(table: str, col: str) -> None:
            t = tables.get(table)
            if t is None:
                raise UsageError(f"{where}: there is no table {table!r}; tables are: "
                                 + ", ".join(sorted(tables)), table=table)
            names = [c.name for c in t.columns]
            if col not in names:
                raise UsageError(f"{where}: table {table} has no column {col!r}; its columns are: "
                                 + ", ".join(names), table=table, column=col)

        for e in self.foreign_keys:
            for c in [*e.columns, *(c for c, _ in e.when)]:
                column(e.child, c)
            for c in e.ref_columns:
                column(e.parent, c)
        for s in [*self.skip, *(edge for edge, _ in self.caps)]:
            table, _, cols = s.rpartition(".")
            for c in cols.split(","):
                column(table, c)
        for name in self.lookups:
            if name not in tables:
                raise UsageError(f"{where}: lookup {name!r} is not a table; tables are: "
                                 + ", ".join(sorted(tables)), table=name)

    def skips(self, edge: Edge) -> bool:
        return edge.name in self.skip
