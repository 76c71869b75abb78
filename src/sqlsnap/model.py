"""The schema as sources describe it: plain dataclasses and the foreign-key graph, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Column:
    name: str
    #: The type as the source spells it (``numeric(10,2)``, ``varchar(255)``, ``INTEGER``).
    type: str
    nullable: bool
    #: How values of this column are written when JSON has no native form: ``"base64"`` for
    #: binary columns, else ``None``. Recorded in the metadata so readers can decode.
    encoding: str | None = None

    def to_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.encoding:
            out["encoding"] = self.encoding
        return out


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]

    def to_metadata(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "references": {"table": self.ref_table, "columns": list(self.ref_columns)},
        }


@dataclass
class Table:
    #: The name used in the snapshot: ``users`` for the default schema, ``audit.events`` otherwise.
    name: str
    #: The schema (PostgreSQL) or database (MySQL) it lives in; ``main`` for SQLite.
    schema: str
    #: The bare table name inside ``schema``.
    relname: str
    columns: list[Column]
    primary_key: list[str] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    #: The server's estimate, for planning and progress; exact counts come from the export.
    estimated_rows: int | None = None
    #: The server's size on disk, to read the largest tables first (None where unknown).
    estimated_bytes: int | None = None
    #: Source-specific details (type oids, column kinds) the source needs to read the table.
    details: Any = None


def dependency_order(tables: Sequence[Table]) -> list[Table]:
    """Parents before children (so a restore can load in file order); ties by name; cycles
    are broken by name."""
    by_name = {t.name: t for t in tables}
    parents = {t.name: {fk.ref_table for fk in t.foreign_keys if fk.ref_table in by_name} - {t.name}
               for t in tables}
    order: list[Table] = []
    done: set[str] = set()
    remaining = sorted(by_name)
    while remaining:
        ready = [n for n in remaining if parents[n] <= done] or remaining[:1]
        for n in ready:
            order.append(by_name[n])
            done.add(n)
        remaining = [n for n in remaining if n not in done]
    return order
