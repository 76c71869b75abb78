"""What a reader is asked to read (:class:`ReadRequest`): a table, the columns and rules of
the policy (:class:`Projection`), the rows (a :class:`~sqlsnap.plan.filters.RowFilter`) and
the range of the table (a :class:`Part`), and for a segment closed under foreign keys the
rows of the closure (a :class:`~sqlsnap.plan.segment.SegmentRead`). Pure data; the
transforms inside a projection are compiled by the policy
(:func:`sqlsnap.policy.transforms.compile_projections`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any

from ..model import Table
from ..values import ENCODER, Converter
from .filters import RowFilter
from .segment import SegmentRead


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
            return lambda batch: ENCODER.encode_lines(
                [{n: conv(v) for n, conv, v in zip(out_names, convs, row)} for row in batch])
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


@dataclass(frozen=True)
class Part:
    """One of the disjoint ranges a source splits a large table into (``Source.split``), so
    that readers can read it side by side. ``bounds`` is the source's own description of
    the range (PostgreSQL: heap pages ``[lo, hi)``, either end open); nobody else reads it."""

    index: int
    count: int
    bounds: tuple[Any, Any]
    estimated_rows: int | None = None
    estimated_bytes: int | None = None


@dataclass(frozen=True)
class ReadRequest:
    """Read ``table``'s rows (within ``part`` when given) for which ``row_filter`` holds and,
    with ``segment``, that are in the segment's closure, as ``projection`` says (None: every
    column as is)."""

    table: Table
    projection: Projection | None = None
    row_filter: RowFilter | None = None
    part: Part | None = None
    segment: SegmentRead | None = None

    @property
    def name(self) -> str:
        return self.table.name
