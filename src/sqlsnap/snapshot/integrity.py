"""Referential integrity of a snapshot: every foreign-key value looked up among the parent
table's rows in the same snapshot (this keeps the referenced keys in memory: about 100
bytes a key); the dangling ones are listed, up to a bound, and counted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec


@dataclass
class Dangling:
    """A foreign-key value whose parent row is not in the snapshot."""

    table: str
    line: int
    columns: list[str]
    values: list[Any]
    ref_table: str
    ref_columns: list[str]
    reason: str = ""

    def __str__(self) -> str:
        pairs = ", ".join(f"{c}={msgspec.json.encode(v).decode()}" for c, v in zip(self.columns, self.values))
        where = f"{self.ref_table}({', '.join(self.ref_columns)})"
        return f"{self.table} line {self.line}: {pairs} has no row in {where}" + (
            f" ({self.reason})" if self.reason else "")

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "line": self.line, "columns": self.columns, "values": self.values,
                "references": {"table": self.ref_table, "columns": self.ref_columns}}


_MISSING = object()


def _key(row: dict[str, Any], columns: Sequence[str]) -> Any:
    """The hashable key of ``columns`` in ``row``; None when a value is NULL or not exported."""
    values = []
    for c in columns:
        v = row.get(c, _MISSING)
        if v is None or v is _MISSING:
            return None
        if isinstance(v, dict | list):
            v = msgspec.json.encode(v)
        values.append(v)
    return values[0] if len(values) == 1 else tuple(values)


class ForeignKeys:
    def __init__(self, tables: dict[str, Any], max_listed: int) -> None:
        self.max_listed = max_listed
        self.fks: dict[str, list[tuple[list[str], str, list[str]]]] = {}
        self.collect: dict[str, list[tuple[str, ...]]] = {}
        self.keys: dict[tuple[str, tuple[str, ...]], set[Any]] = {}
        self.present = list(tables)
        self._present = set(tables)
        for name, entry in tables.items():
            for fk in entry.get("foreign_keys") or ():
                cols = list(fk["columns"])
                ref = fk["references"]
                ref_cols = tuple(ref["columns"])
                self.fks.setdefault(name, []).append((cols, ref["table"], list(ref_cols)))
                if ref["table"] in tables and ref_cols not in self.collect.setdefault(ref["table"], []):
                    self.collect[ref["table"]].append(ref_cols)
                    self.keys[(ref["table"], ref_cols)] = set()
        self.done: set[str] = set()
        self.pending: list[tuple[str, int, int, Any, list[Any]]] = []
        self.dangling: list[Dangling] = []
        self.total = 0

    def wants(self, table: str) -> bool:
        return table in self.fks or table in self.collect

    def _report(self, table: str, line: int, fk: tuple[list[str], str, list[str]], values: list[Any],
                reason: str = "") -> None:
        self.total += 1
        if len(self.dangling) < self.max_listed:
            self.dangling.append(Dangling(table, line, fk[0], values, fk[1], fk[2], reason))

    def row(self, table: str, line: int, row: dict[str, Any]) -> None:
        for cols in self.collect.get(table, ()):
            k = _key(row, cols)
            if k is not None:
                self.keys[(table, cols)].add(k)
        for i, fk in enumerate(self.fks.get(table, ())):
            k = _key(row, fk[0])
            if k is None:
                continue
            values = [row[c] for c in fk[0]]
            parent = fk[1]
            if parent not in self._present:
                self._report(table, line, fk, values, "that table is not in the snapshot")
            elif parent in self.done:
                if k not in self.keys[(parent, tuple(fk[2]))]:
                    self._report(table, line, fk, values)
            else:
                # The parent comes later in the file (a cycle) or is this very table.
                self.pending.append((table, line, i, k, values))

    def table_done(self, table: str) -> None:
        self.done.add(table)

    def finish(self) -> None:
        for table, line, i, k, values in self.pending:
            fk = self.fks[table][i]
            if k not in self.keys.get((fk[1], tuple(fk[2])), ()):
                self._report(table, line, fk, values)
        self.pending = []
        # In file order: tables as the metadata lists them (the data's order), then by line.
        order = {name: i for i, name in enumerate(self.present)}
        self.dangling.sort(key=lambda d: (order.get(d.table, -1), d.line))
