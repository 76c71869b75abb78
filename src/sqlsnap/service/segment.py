"""The segment of a service export (docs/segments.md): which rows, as the export form, the API
and a source's default (``[sources.NAME.segment]``) give it, checked before anything runs.

The ``where`` texts are parsed by the command line's parser (:func:`sqlsnap.plan.where.parse_where`):
names become names that the plan checks against the schema, values become typed values that
the driver binds, and anything else is refused with its one-line message (a 400 in the API, an
error on the form). Nothing of the text reaches SQL.

A segment file (foreign keys the schema lacks, caps, lookups) is a property of the source's
schema, so it is named in the configuration (``[sources.NAME] segment_file``), never by a
request: a request naming a server path would let an admin read files of the service host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import UsageError
from ..options import SegmentOptions
from ..plan.segment import Sample, parse_when
from ..plan.where import parse_where

#: What a segment table (configuration, API) may hold.
KEYS = ("where", "closure", "since", "until", "date_columns", "tables", "closed", "sample", "limit", "seed")
#: Bounds that keep a request small (the API's body is limited too): conditions and names.
MAX_ITEMS = 50
MAX_TEXT = 500


@dataclass(frozen=True)
class SegmentRequest:
    """A segment as asked for: the ``sqlsnap export`` options of docs/segments.md."""

    #: ``--where`` texts, AND-ed per table; the seeds of a closed segment.
    where: tuple[str, ...] = ()
    #: False: ``--no-closure`` (each filter on its own table, the other tables whole).
    closure: bool = True
    since: str | None = None
    until: str | None = None
    date_columns: tuple[str, ...] = ()
    #: ``--tables``: only these tables (globs); with ``closed``, whole, with what they reference.
    tables: tuple[str, ...] = ()
    closed: bool = False
    sample: str | None = None
    limit: int | None = None
    seed: int | None = None

    @property
    def active(self) -> bool:
        """Whether this selects rows at all (an empty one is the whole database)."""
        return bool(self.where or self.since or self.until or self.closed or self.sample
                    or self.limit is not None or self.tables)

    def check(self) -> None:
        """Refuse what cannot run, with the option's message: a ``where`` that is not one
        condition, a date that is not a date, a sample that is not a percentage."""
        for name in ("where", "date_columns", "tables"):
            items = getattr(self, name)
            if len(items) > MAX_ITEMS or any(len(i) > MAX_TEXT or not i.strip() for i in items):
                raise UsageError(f"segment {name}: at most {MAX_ITEMS} non-empty items of at most "
                                 f"{MAX_TEXT} characters")
        self.options()
        parse_when(self.since, "since")
        parse_when(self.until, "until")
        Sample.parse(self.sample, self.limit, self.seed)
        if self.closed and not self.tables:
            raise UsageError("segment closed: name the tables to take whole (tables = [...]), "
                             "e.g. tables = [\"incidents\"]")
        if self.date_columns and not (self.since or self.until):
            raise UsageError("segment date_columns: give the date range too (since, until)")

    def options(self, segment_file: str | None = None) -> SegmentOptions:
        """The library's segment options (the ``where`` texts parsed; UsageError if one is not
        a condition). ``segment_file`` applies only to a segment (the library refuses it on a
        whole export)."""
        where = parse_where(self.where)
        out = SegmentOptions(where, closure=bool(where) and self.closure, since=self.since, until=self.until,
                             date_columns=self.date_columns, closed=self.closed, sample=self.sample,
                             limit=self.limit, seed=self.seed)
        return replace(out, segment_file=segment_file) if out.active and segment_file else out

    def describe(self) -> str:
        """One line for the history, the job page and the audit trail; "" for no segment."""
        parts = [" and ".join(self.where)] if self.where else []
        if self.where and not self.closure:
            parts.append("no closure")
        if self.since or self.until:
            span = f"{self.since or '...'} to {self.until or '...'}"
            parts.append(span + (f" on {', '.join(self.date_columns)}" if self.date_columns else ""))
        if self.tables:
            parts.append("tables " + ", ".join(self.tables) + (" closed" if self.closed else ""))
        if self.sample or self.limit is not None:
            picked = " ".join(p for p in (f"sample {self.sample}" if self.sample else "",
                                          f"limit {self.limit}" if self.limit is not None else "") if p)
            parts.append(f"{picked} seed {self.seed or 0}")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, where: str = "segment") -> SegmentRequest:
        """From a configuration table or stored JSON; UsageError names the key at fault."""
        if not data:
            return cls()
        if not isinstance(data, Mapping):
            raise UsageError(f"{where} must be a table")
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise UsageError(f"unknown key {unknown[0]!r} in {where}; valid keys: {', '.join(KEYS)}")
        values: dict[str, Any] = {}
        for key in ("where", "date_columns", "tables"):
            value = data.get(key, [])
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{where} {key} must be a list of strings")
            values[key] = tuple(value)
        for key in ("closure", "closed"):
            if key in data and not isinstance(data[key], bool):
                raise UsageError(f"{where} {key} must be true or false")
            values[key] = data.get(key, key == "closure")
        for key in ("since", "until", "sample"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise UsageError(f"{where} {key} must be a string, e.g. \"2026-10-01\" or \"5%\"")
            values[key] = value or None
        for key in ("limit", "seed"):
            value = data.get(key)
            if value is not None and (type(value) is not int or (key == "limit" and value < 1)):
                raise UsageError(f"{where} {key} must be a whole number" + (" of at least 1" if key == "limit"
                                                                             else ""))
            values[key] = value
        return cls(**values)
