"""A segment's closure as one set of rows per state, each computed once, in dependency order
(PostgreSQL; docs/segments.md, "How it runs").

A state is a table and how its rows were reached: ``D(n)``, its rows reached downwards (seeds
and children), and ``U(n)``, its rows reached as parents. They follow from each other:

* ``D(n)``: the seeds of ``n``, and the rows of ``n`` whose foreign key holds a key of
  ``D(p)``, for each edge from ``n`` to a parent ``p``;
* ``U(n)``: the parent-only seeds of ``n``, and the rows of ``n`` that a row of ``D(c)`` or
  ``U(c)`` references, for each edge from a child ``c`` to ``n``.

Each set is a ``MATERIALIZED`` query of its own, in its table's own key types, computed from
the sets it depends on once they are complete: a downward set is one pass over its table that
tests each row's foreign keys against the (hashed) parent sets, ``x.company_id IN (...) OR
x.incident_id IN (...)``, so a table without an index on its foreign keys is read once, not
once per step of a recursion (bench/README.md: the recursive query took 1.0-1.2 s to count one
tenant of the benchmark database as built, these sets 0.6-1.0 s on the same busy host, most of
it the one pass over each table that the foreign keys' missing indexes leave). Sets that
depend on themselves (a tree's self-reference, a cycle of tables) are one recursive query over
``(t, d, key as text)`` for just that group (:class:`sqlsnap.sources.base._Render`).

The rows of the closure are then ``D(n) ∪ U(n)``, those only in ``U(n)`` reached only as
parents: the same rule and the same rows as :func:`sqlsnap.sources.base.render_segment`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..plan.segment import Closure, Edge, SegmentRead
from .base import SegmentSQL, Step, _direct, _Render, relevant_steps, render_filter

#: A state: the node (a table's index in the closure) and 1 for D (downwards), 0 for U.
State = tuple[int, int]


def render_segment_sets(segment: SegmentRead, dialect: SegmentSQL, bind: Callable[[Any], str]) -> str:
    """The condition "this row is in the closure" for a query on the table read (unaliased);
    ``parents_only``: in ``U`` and not in ``D``."""
    sets = _Sets(segment.closure, dialect, bind, segment.node)
    node, cl, q = segment.node, segment.closure, dialect.quote
    if not cl.keys[node]:
        return "1 = 0"  # a table without a key holds no row of the segment (build_closure)
    down, up = (node, 1) in sets.states, (node, 0) in sets.states
    names = ", ".join(f"k{j + 1}" for j in range(len(cl.keys[node])))
    if segment.parents_only:
        if not up:
            return "1 = 0"
        pick = f"SELECT {names} FROM {sets.name((node, 0))}" + \
            (f" EXCEPT SELECT {names} FROM {sets.name((node, 1))}" if down else "")
    else:
        picks = [f"SELECT {names} FROM {sets.name(s)}" for s in ((node, 1), (node, 0)) if s in sets.states]
        if not picks:
            return "1 = 0"
        pick = " UNION ".join(picks)
    keys = ", ".join(q(c) for c in cl.keys[node])
    return f"({keys}) IN ({sets.with_clause()} {pick})"


def render_segment_sets_rows(closure: Closure, dialect: SegmentSQL, bind: Callable[[Any], str],
                             counts: bool) -> str:
    """Every row of the closure once: ``(t, m, k, c)``, ``m`` 0 where reached only as parents,
    ``k`` the key as an array of text, ``c`` the row's ``ctid`` (to fill a temporary table);
    with ``counts``, per node ``(t, rows, rows reached only as parents)``."""
    sets = _Sets(closure, dialect, bind, None)
    per_node = []
    for n in range(len(closure.tables)):
        parts = [f"SELECT {', '.join(sets.key_names(n))}, c, {d} AS m FROM {sets.name((n, d))}"
                 for d in (1, 0) if (n, d) in sets.states]
        if not parts or not closure.keys[n]:
            continue
        grouped = ", ".join([*sets.key_names(n), "c"])
        # A key with a NULL (a table without a primary key, keyed by nullable foreign keys)
        # matches no key, as where a query reads the table by key (docs/segments.md, "Limits").
        known = " AND ".join(f"{k} IS NOT NULL" for k in sets.key_names(n))
        rows = (f"SELECT {grouped}, max(m) AS m FROM ({' UNION ALL '.join(parts)}) a{n} WHERE {known} "
                f"GROUP BY {grouped}")
        if counts:
            per_node.append(f"SELECT {n} AS t, count(*) AS n, sum(CASE WHEN m = 0 THEN 1 ELSE 0 END) AS p "
                            f"FROM ({rows}) g{n}")
        else:
            text = ", ".join(f"CAST({k} AS text)" for k in sets.key_names(n))
            per_node.append(f"SELECT {n} AS t, m, ARRAY[{text}] AS k, c FROM ({rows}) g{n}")
    if not per_node:
        return "SELECT 0, 0, 0 WHERE 1 = 0" if counts else \
            "SELECT 0, 0, ARRAY[]::text[], NULL::tid WHERE 1 = 0"
    return f"{sets.with_clause()} {' UNION ALL '.join(per_node)}"


class _Indexed(str):
    """A condition an index on the table's foreign key serves."""


class _Sets:
    """The sets one query needs (those on a path from a seed to ``node``; all when None), as
    the queries of one ``WITH RECURSIVE``, each after those it depends on."""

    def __init__(self, cl: Closure, dialect: SegmentSQL, bind: Callable[[Any], str],
                 node: int | None) -> None:
        self.cl, self.dialect, self.q = cl, dialect, dialect.quote
        self.r = _Render(cl, dialect, bind)
        self.states, steps = relevant_steps(cl, node)
        # What each state is made of: its seeds, and the steps into it with the states they
        # leave from (up steps leave from every row of the child, reached either way).
        self.seeds: dict[State, list[int]] = {}
        for k, (i, _, down) in enumerate(cl.seeds):
            if (i, int(down)) in self.states:
                self.seeds.setdefault((i, int(down)), []).append(k)
        self.into: dict[State, list[tuple[Step, list[State]]]] = {s: [] for s in self.states}
        for step in steps:
            frm, _, to, d, _, down = step
            sources = [(frm, 1)] if down else [s for s in ((frm, 1), (frm, 0)) if s in self.states]
            self.into[(to, d)].append((step, sources))

    def carried(self, n: int) -> list[str]:
        """The columns of node ``n`` that hold its parents' keys as they are (its plain foreign
        keys to a primary key): each set of ``n``'s rows carries them (as ``f1``, ``f2``...), so
        that their parents are found without looking the rows up again."""
        cols: list[str] = []
        for e in self.cl.edges:
            if e.child == self.cl.tables[n].name and e.plain and _direct(self.cl, e):
                cols += [c for c in e.columns if c not in cols]
        return cols

    def columns(self, n: int, alias: str) -> str:
        """What every set of node ``n`` holds: its key (``k1``...), the row's ``ctid`` (``c``:
        the row's place, by which the table is read) and the carried columns."""
        cols = [*self.cl.keys[n], "ctid", *self.carried(n)]
        return ", ".join(f"{alias}.{self.q(c) if c != 'ctid' else c}" for c in cols)

    def column_names(self, n: int) -> str:
        return ", ".join([*self.key_names(n), "c", *(f"f{j + 1}" for j in range(len(self.carried(n))))])

    @staticmethod
    def name(state: State) -> str:
        return f"sqlsnap_{'d' if state[1] else 'u'}{state[0]}"

    def key_names(self, n: int) -> list[str]:
        return [f"k{j + 1}" for j in range(len(self.cl.keys[n]))]

    def with_clause(self) -> str:
        parts: list[str] = []
        for group in self._groups():
            if len(group) == 1 and all(group[0] not in srcs for _, srcs in self.into[group[0]]):
                parts.append(self._plain(group[0]))
            else:
                parts += self._recursive(group)
        return "WITH RECURSIVE " + ", ".join(parts)

    def _groups(self) -> list[list[State]]:
        """The states in groups that depend on each other (strongly connected), each group after
        those it depends on (Tarjan's algorithm emits them in that order)."""
        index: dict[State, int] = {}
        low: dict[State, int] = {}
        stack: list[State] = []
        on_stack: set[State] = set()
        groups: list[list[State]] = []

        def visit(s: State) -> None:
            # Recursion depth is bounded by the number of states (two per table).
            index[s] = low[s] = len(index)
            stack.append(s)
            on_stack.add(s)
            for _, sources in self.into[s]:
                for src in sources:
                    if src not in index:
                        visit(src)
                        low[s] = min(low[s], low[src])
                    elif src in on_stack:
                        low[s] = min(low[s], index[src])
            if low[s] == index[s]:
                group: list[State] = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    group.append(top)
                    if top == s:
                        break
                groups.append(sorted(group))

        for s in sorted(self.states):
            if s not in index:
                visit(s)
        return groups

    def _select(self, state: State, conds: list[str], columns: str | None = None) -> str:
        """The rows of the state's table that meet any of ``conds``: one pass over the table for
        the conditions no index serves, one lookup through its index for each of the others (an
        OR would make the server read the whole table for them too)."""
        n = state[0]
        t = self.cl.tables[n]
        columns = columns or ", ".join(f"x.{self.q(c)}" for c in self.cl.keys[n])
        source = f"SELECT {columns} FROM {self.dialect.table_name(t)} x WHERE "
        scanned = [c for c in conds if not isinstance(c, _Indexed)]
        selects = ([source + " OR ".join(scanned)] if scanned else []) + \
            [source + c for c in conds if isinstance(c, _Indexed)]
        return " UNION ".join(selects) or source + "1 = 0"

    def _plain(self, state: State) -> str:
        n = state[0]
        return (f"{self.name(state)}({self.column_names(n)}) AS {self.dialect.materialized}"
                f"({self._select(state, self._conditions(state, set()), self.columns(n, 'x'))})")

    def _recursive(self, group: list[State]) -> list[str]:
        """A group of states that depend on each other: one recursive query over ``(t, d, key
        as text)``, started from what the group gets from outside, then each state's typed set
        read from it."""
        r, cl = self.r, self.cl
        inside = set(group)
        rec = f"sqlsnap_r{group[0][1]}_{group[0][0]}"
        anchors = []
        for state in group:
            n, d = state
            text = f"{n} AS t, {d} AS d, " + ", ".join(f"{k} AS {name}" for k, name in
                                                       zip(r.keys_of(n, "x"), r.key_names))
            anchors.append(self._select(state, self._conditions(state, inside), text))
        branches = []
        for state in group:
            for (_, _, to, d, e, down), sources in self.into[state]:
                branches += [r.branch((src[0], src[1], to, d, e, down), "f")
                             for src in sources if src in inside]
        body = (" UNION ".join(anchors) + f" UNION (WITH f AS (SELECT * FROM {rec}) "
                + " UNION ALL ".join(branches) + ")")
        out = [f"{rec}(t, d, {', '.join(r.key_names)}) AS ({body})"]
        for n, d in group:
            t = cl.tables[n]
            typed = ", ".join(self.dialect.from_key(f"k{j + 1}", r.cols[t.name][c])
                              for j, c in enumerate(cl.keys[n]))
            keys = ", ".join(f"x.{self.q(c)}" for c in cl.keys[n])
            out.append(f"{self.name((n, d))}({self.column_names(n)}) AS {self.dialect.materialized}"
                       f"(SELECT {self.columns(n, 'x')} FROM {self.dialect.table_name(t)} x "
                       f"WHERE ({keys}) IN (SELECT {typed} FROM {rec} WHERE t = {n} AND d = {d}))")
        return out

    def _conditions(self, state: State, inside: set[State]) -> list[str]:
        """The conditions, on the table's rows ``x``, of being in ``state`` through its seeds and
        the steps from states not in ``inside`` (those come through the recursion)."""
        n, _ = state
        cl, q, r = self.cl, self.q, self.r
        conds: list[str] = []
        keys = ", ".join(f"x.{q(c)}" for c in cl.keys[n])
        for k in self.seeds.get(state, []):
            i, row_filter, _ = cl.seeds[k]
            if cl.sample is None:
                conds.append("(" + (self._filter(row_filter) or "1 = 1") + ")")
            else:
                picked = ", ".join(f"s.{q(c)}" for c in cl.keys[i])
                conds.append(f"({keys}) IN ({r.seed(i, row_filter, picked)})")
        # Parents found through their own key (the child's foreign key holds it) are merged into
        # one lookup: the parent table is then read through its primary key, not scanned.
        by_key: list[str] = []
        for (_, _, _, _, e, down), sources in self.into[state]:
            outside = [s for s in sources if s not in inside]
            if not outside:
                continue
            found = " UNION ALL ".join(f"SELECT {', '.join(self.key_names(s[0]))} FROM {self.name(s)}"
                                       for s in outside)
            if down:
                cond = self._down(e, found)
                conds.append(_Indexed(cond) if _direct(cl, e) and self.dialect.indexed(
                    cl.tables[cl.index(e.child)], e.columns) else cond)
            elif e.plain and _direct(cl, e):
                # The parent keys the child's rows carry, in the parent's key order.
                child = cl.index(e.child)
                ref = dict(zip(e.ref_columns, e.columns))
                held = ", ".join(f"f{self.carried(child).index(ref[c]) + 1}" for c in cl.keys[n])
                by_key += [f"SELECT {held} FROM {self.name(s)}" for s in outside]
            elif _direct(cl, e):
                by_key.append(self._up_direct(e, found))
            else:
                conds.append(self._up(e, found))
        if by_key:
            conds.append(f"({keys}) IN ({' UNION ALL '.join(by_key)})")
        return conds

    def _filter(self, row_filter: Any) -> str:
        return render_filter(row_filter, lambda name: "x." + self.q(name), self.r.bind)

    def _down(self, e: Edge, found: str) -> str:
        """The child ``x`` references a row of ``found`` (the parent's keys)."""
        cl, q, r = self.cl, self.q, self.r
        parent = cl.index(e.parent)
        if _direct(cl, e):
            ref = dict(zip(e.ref_columns, e.columns))
            cols = ", ".join(f"x.{q(ref[c])}" for c in cl.keys[parent])
            return f"(({cols}) IN ({found}){r.when(e, 'x')}{r.cap(e)})"
        pkeys = ", ".join(f"p.{q(c)}" for c in cl.keys[parent])
        values = ", ".join(r.value(e, i, "x") for i in range(len(e.columns)))
        refs = ", ".join(self.dialect.to_key(f"p.{q(c)}", r.cols[e.parent][c]) if e.path(i) else f"p.{q(c)}"
                         for i, c in enumerate(e.ref_columns))
        return (f"(({values}) IN (SELECT {refs} FROM {self.dialect.table_name(cl.tables[parent])} p "
                f"WHERE ({pkeys}) IN ({found})){r.when(e, 'x')}{r.cap(e)})")

    def _child_rows(self, e: Edge, found: str) -> str:
        child = self.cl.index(e.child)
        ckeys = ", ".join(f"y.{self.q(c)}" for c in self.cl.keys[child])
        return (f"FROM {self.dialect.table_name(self.cl.tables[child])} y WHERE ({ckeys}) IN ({found})"
                + self.r.when(e, "y"))

    def _up_direct(self, e: Edge, found: str) -> str:
        """The parent keys that the rows of ``found`` (the child's keys) hold, in the parent's key
        order."""
        ref = dict(zip(e.ref_columns, e.columns))
        cols = ", ".join(f"y.{self.q(ref[c])}" for c in self.cl.keys[self.cl.index(e.parent)])
        return f"SELECT {cols} {self._child_rows(e, found)}"

    def _up(self, e: Edge, found: str) -> str:
        """The parent ``x`` is referenced by a row of ``found`` through a key that is not its own
        (other columns, or a JSON value compared as text)."""
        q, r = self.q, self.r
        refs = ", ".join(self.dialect.to_key(f"x.{q(c)}", r.cols[e.parent][c]) if e.path(i) else f"x.{q(c)}"
                         for i, c in enumerate(e.ref_columns))
        values = ", ".join(r.value(e, i, "y") for i in range(len(e.columns)))
        return f"(({refs}) IN (SELECT {values} {self._child_rows(e, found)}))"
