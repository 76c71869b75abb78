"""PostgreSQL binary COPY decoded in C (``sqlsnap._pgcopy``, issue 12): what to ask the server
and what the decoder writes.

The server is asked for ``COPY (SELECT <columns as stored> FROM ...) TO STDOUT (FORMAT
binary)``, the cheapest form it can send (about half the CPU of building each row's JSON,
bench/README.md), and sqlsnap/_pgdecode.c writes each tuple as the JSON line the server-JSON
path writes, byte for byte (tests/test_pgcopy.py). Types the decoder does not know are asked
for as their text (``col::text``) in the same statement. Floats are read as stored and
written with the shortest round-trip digits of PostgreSQL 12+ (sqlsnap/_pgfloat.c); an older
server writes other digits (``extra_float_digits=1`` gives 16 there), so from it they are
asked for as text.

A policy's projection becomes the decoder's ops: dropped columns are not selected, constants
are literals, and each value a transform needs is cut out of the line for Python, the rest of
the row staying C-written bytes (the same shape as the server-JSON path's splice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from ..model import Table
from ..plan.request import OutputColumn, Projection
from ..values import ENCODER, number_token
from .base import leave_out_large

# The field codes of sqlsnap/_pgdecode.h.
TEXT, BOOL, INT2, INT4, INT8, OID, NUMERIC, FLOAT_TEXT, JSON, JSONB = range(10)
BYTEA, UUID, DATE, TIME, TIMETZ, TIMESTAMP, TIMESTAMPTZ, INTERVAL, FLOAT4, FLOAT8 = range(10, 20)
ARRAY = 32
NULL_JSON, NULL_EMPTY = 0, 1

_INTS = {"int2": INT2, "int4": INT4, "int8": INT8, "oid": OID}
_BY_TYPE = {"bool": BOOL, "numeric": NUMERIC, "json": JSON, "jsonb": JSONB, "bytea": BYTEA,
            "uuid": UUID, "date": DATE, "time": TIME, "timetz": TIMETZ, "timestamp": TIMESTAMP,
            "timestamptz": TIMESTAMPTZ, "interval": INTERVAL, **_INTS}
_FLOATS = {"float4": FLOAT4, "float8": FLOAT8}
#: The first server version whose float output (with extra_float_digits > 0) is the shortest
#: round-trip digits that sqlsnap/_pgfloat.c writes.
SHORTEST_FLOATS = 120000
#: Read as stored and written as JSON strings: their binary form is their text.
_TEXT_SEND = {"text", "varchar", "bpchar", "name", "citext"}

#: The end of a line that holds a row whose large values were left out (Plan's ``huge``): it
#: ends in the row's ctid as a JSON string, after the closing brace. Every other line ends in
#: its closing brace, and no line holds a newline before its end (JSON escapes it in
#: strings, and json values are written with their line breaks turned into spaces).
HUGE_LINE_MARK = b'"\n'

#: Separates the parts of a line cut for Python: JSON escapes every control character, and
#: json text cannot hold one raw (the same reasoning as the server-JSON path's CSV delimiter).
_SEP = b"\x02"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column(name: str, typname: str, typtype: str, kind: str, element: str | None,
           element_typname: str | None, server_expr: str, server_version: int) -> tuple[str, int]:
    """The SELECT expression and field code of one column; ``kind``, ``element`` and
    ``server_expr`` are those of the server-JSON path's plan (sources/postgresql.py), whose
    bytes these must equal."""
    c = quote(name)
    floats = server_version >= SHORTEST_FLOATS
    if kind == "array":
        if element == "number" and element_typname in _FLOATS:
            if floats:
                return server_expr, ARRAY + _FLOATS[element_typname]
            return f"{c}::text[]", ARRAY + FLOAT_TEXT
        if element == "int" and element_typname in _INTS:
            return server_expr, ARRAY + _INTS[element_typname]
        if element == "number":
            return server_expr, ARRAY + NUMERIC
        if element == "bool":
            return server_expr, ARRAY + BOOL
        if element == "jsonb":  # json[]: elements as stored, trimmed by the plan (and by JSON)
            return server_expr, ARRAY + (JSON if element_typname == "json" else JSONB)
        return server_expr, ARRAY + TEXT  # text elements, or others cast to text[]
    if typname in _FLOATS:
        return (c, _FLOATS[typname]) if floats else (f"{c}::text", FLOAT_TEXT)
    if typname in _BY_TYPE:
        return c, _BY_TYPE[typname]
    if kind == "text" and (typname in _TEXT_SEND or typtype == "e"):
        return c, TEXT
    # "char" (its text escapes bytes above 127), inet (abbrev) and every other type: the
    # server's text, as the server-JSON path writes it.
    return server_expr if server_expr != c else f"{c}::text", TEXT


_SHORT_ESCAPES = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def json_string(value: str) -> bytes:
    """A string as the server's escape_json writes it (json.c), for keys and constants."""
    out = ['"']
    for ch in value:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20:
            out.append(_SHORT_ESCAPES.get(ch, f"\\u{o:04x}"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out).encode()


def _constant(value: Any) -> bytes:
    # The server-JSON path selects a constant as a text literal (or NULL::text).
    return b"null" if value is None else json_string(str(value))


def _value_decoder(kind: str) -> Callable[[bytes], Any]:
    """A value cut out of the line (its JSON; empty for NULL) to the value the portable path
    gives a transform (what the server-JSON path's _field decodes)."""
    if kind == "number":
        return lambda b: number_token(b[1:-1] if b[:1] == b'"' else b) if b else None
    if kind in ("jsonb", "json"):
        return lambda b: msgspec.Raw(b) if b else None
    decode = msgspec.json.decode
    return lambda b: decode(b) if b else None


class Plan:
    """The COPY statement for a read, the decoder's program, and ``splice`` (None when the
    decoder's lines are final; else it turns each line into the row, in Python)."""

    def __init__(self, table: Table, columns: Sequence[tuple[str, int]], kinds: Sequence[str],
                 from_: str, projection: Projection | None, huge: Sequence[int] | None = None,
                 huge_bytes: int = 0) -> None:
        names = [c.name for c in table.columns]
        self.splice: Callable[[bytes], bytes] | None = None
        exprs = [c[0] for c in columns]
        codes = [c[1] for c in columns]
        #: Whether a line may end in its row's ctid (``huge``): see below; ``mark``, that field.
        self.huge = bool(huge) and projection is None
        self.mark = -1
        if projection is None:
            reads = list(range(len(names)))
            ops: list[Op] = []
            for i in reads:
                ops.append(((b"{" if i == 0 else b",") + json_string(names[i]) + b":", i, NULL_JSON))
            if self.huge:
                # A text or bytea value over ``huge_bytes`` (its size read from its TOAST
                # pointer: octet_length() does not fetch the value) is sent as NULL, and the line
                # ends in the row's ctid, as a JSON string after the closing brace
                # ('{"id":1,"v":null}"(0,1)"'): the reader then reads those values in pieces
                # (HUGE_LINE_MARK).
                assert huge is not None
                leave_out_large(exprs, huge, lambda e: f"octet_length({e}) > {int(huge_bytes)}", "ctid::text")
                codes.append(TEXT)
                ops.append((b"}", len(names), NULL_EMPTY))
                ops.append((b"\n", -1, NULL_JSON))
                reads.append(len(names))
                self.mark = len(names)
            else:
                ops.append((b"{}\n" if not reads else b"}\n", -1, NULL_JSON))
        else:
            reads = projection.reads
            ops = self._projected(projection, names, kinds, {src: i for i, src in enumerate(reads)})
        self.codes = bytes(codes[i] for i in reads)
        self.ops = ops
        self.sql = (f"COPY (SELECT {', '.join(exprs[i] for i in reads)} FROM {from_}) "
                    "TO STDOUT (FORMAT binary)")

    def _projected(self, projection: Projection, names: list[str], kinds: Sequence[str],
                   pos: dict[int, int]) -> list[Op]:
        cols = projection.columns
        ops: list[Op] = []
        if not any(c.transform for c in cols):
            for n, c in enumerate(cols):
                key = (b"{" if n == 0 else b",") + json_string(c.name) + b":"
                if c.source is None:
                    ops.append((key + _constant(c.constant), -1, NULL_JSON))
                else:
                    ops.append((key, pos[c.source], NULL_JSON))
            ops.append((b"{}\n" if not cols else b"}\n", -1, NULL_JSON))
            return ops
        # Cut for Python: the line is parts joined by _SEP, each either a run of untouched
        # fields ('"a":1,"b":2', written in C) or one value a transform needs (its JSON, empty
        # for NULL); the owners' values come last.
        steps: list[Step] = []
        parts = 0
        in_run = False

        def new_part() -> int:
            nonlocal parts
            if parts:
                ops.append((_SEP, -1, NULL_JSON))
            parts += 1
            return parts - 1

        owners: dict[int, int] = {}
        # (step, column, part) of the transforms that take an owner's value: built once the
        # owners' parts are numbered.
        pending: list[tuple[int, OutputColumn, int]] = []
        for c in cols:
            key = json_string(c.name) + b":"
            if c.transform is None:
                literal = key if c.source is not None else key + _constant(c.constant)
                if in_run:
                    literal = b"," + literal
                else:
                    steps.append(_run(new_part()))
                    in_run = True
                ops.append((literal, -1 if c.source is None else pos[c.source], NULL_JSON))
                continue
            in_run = False
            assert c.source is not None
            p = new_part()
            ops.append((b"", pos[c.source], NULL_EMPTY))
            if c.owner is None:
                steps.append(_transformed(key, c.transform, _value_decoder(kinds[c.source]), p))
            else:
                owners.setdefault(c.owner, -1)
                pending.append((len(steps), c, p))
                steps.append(_run(p))  # replaced below
        for owner in owners:
            owners[owner] = new_part()
            ops.append((b"", pos[owner], NULL_EMPTY))
        for at, c, p in pending:
            assert c.source is not None and c.owner is not None and c.transform is not None
            steps[at] = _owned(json_string(c.name) + b":", c.transform, _value_decoder(kinds[c.source]), p,
                               _value_decoder(kinds[c.owner]), owners[c.owner])
        ops.append((b"\n", -1, NULL_JSON))

        def splice(line: bytes) -> bytes:
            v = line.split(_SEP)
            return b"{" + b",".join([step(v) for step in steps]) + b"}\n"

        self.splice = splice
        return ops


#: One op of the decoder's program: a literal, then a field (-1: none), and how a NULL is written.
Op = tuple[bytes, int, int]
#: One part of a spliced row, from the line's parts.
Step = Callable[[list[bytes]], bytes]


def _run(part: int) -> Step:
    return lambda v: v[part]


def _transformed(key: bytes, fn: Callable[[Any], Any], decode: Callable[[bytes], Any], part: int) -> Step:
    encode = ENCODER.encode
    return lambda v: key + encode(fn(decode(v[part])))


def _owned(key: bytes, fn: Callable[[Any, Any], Any], decode: Callable[[bytes], Any], part: int,
           owner_decode: Callable[[bytes], Any], owner_part: int) -> Step:
    encode = ENCODER.encode
    return lambda v: key + encode(fn(decode(v[part]), owner_decode(v[owner_part])))
