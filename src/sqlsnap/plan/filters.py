"""Row filters: which rows of a table an export takes, as data, never as SQL text.

A :class:`RowFilter` is a conjunction of :class:`Condition` s on the table's own columns.
Column names are checked against the schema by the plan; values stay values all the way to
the driver, which binds or quotes them (:func:`sqlsnap.sources.base.render_filter`), so a
filter cannot carry SQL. Each source renders the same filter in its own dialect, and the
snapshot's metadata records it (``filters``) as :meth:`RowFilter.to_json` gives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ..errors import UsageError

#: Operators, and how many values each takes (None: one or more).
OPERATORS: dict[str, int | None] = {
    "=": 1, "!=": 1, "<": 1, "<=": 1, ">": 1, ">=": 1,
    "in": None, "between": 2, "is null": 0, "is not null": 0,
}
#: Values a condition may hold: what JSON and the drivers both carry without loss.
VALUE_TYPES = (str, int, float, bool, Decimal, date, datetime)


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    values: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise UsageError(f"unknown operator {self.op!r} in a row filter on {self.column!r}; use one of: "
                             + ", ".join(OPERATORS))
        arity = OPERATORS[self.op]
        if (arity is None and not self.values) or (arity is not None and len(self.values) != arity):
            want = "one or more values" if arity is None else f"{arity} value{'s' * (arity != 1)}"
            raise UsageError(f"the row filter {self.column} {self.op} takes {want}, not {len(self.values)}")
        for v in self.values:
            if not isinstance(v, VALUE_TYPES):
                raise UsageError(f"the row filter on {self.column!r} holds a {type(v).__name__}; values are "
                                 "text, numbers, booleans, dates or timestamps")

    def to_json(self) -> dict[str, Any]:
        values = [v.isoformat() if isinstance(v, date | datetime) else
                  (str(v) if isinstance(v, Decimal) else v) for v in self.values]
        return {"column": self.column, "op": self.op, "values": values}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Condition:
        return cls(str(data["column"]), str(data["op"]), tuple(data.get("values", ())))


@dataclass(frozen=True)
class RowFilter:
    """The rows of a table for which every condition holds."""

    conditions: tuple[Condition, ...]

    @classmethod
    def of(cls, *conditions: Condition | tuple[Any, ...]) -> RowFilter:
        """``RowFilter.of(("created_at", ">=", "2026-10-01"), ("status", "in", "open", "closed"))``."""
        return cls(tuple(c if isinstance(c, Condition) else Condition(c[0], c[1], tuple(c[2:]))
                         for c in conditions))

    @property
    def columns(self) -> list[str]:
        return [c.column for c in self.conditions]

    def to_json(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.conditions]

    @classmethod
    def from_json(cls, data: Iterable[Mapping[str, Any]]) -> RowFilter:
        return cls(tuple(Condition.from_json(c) for c in data))


def filters_to_json(filters: Mapping[str, RowFilter]) -> dict[str, list[dict[str, Any]]]:
    return {table: f.to_json() for table, f in sorted(filters.items())}


def filters_from_json(data: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, RowFilter]:
    return {table: RowFilter.from_json(conds) for table, conds in data.items()}
