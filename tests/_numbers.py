"""Reading exported documents in tests: numbers as they were written, and row lines."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


class Tok(str):
    """A JSON number with a fraction or an exponent, exactly as it is written in the file."""


def load(raw: bytes) -> Any:
    return json.loads(raw, parse_float=Tok)


def decimals(value: Any) -> Any:
    """``value`` with every Tok turned into a Decimal, to compare with parsed JSON."""
    if isinstance(value, Tok):
        return Decimal(value)
    if isinstance(value, list):
        return [decimals(v) for v in value]
    if isinstance(value, dict):
        return {k: decimals(v) for k, v in value.items()}
    return value


def data_lines(raw: bytes, table: str) -> list[bytes]:
    """The row lines of ``table`` in the document, trailing commas removed."""
    lines = raw.split(b"\n")
    start = lines.index(json.dumps(table).encode() + b": [")
    out = []
    for line in lines[start + 1:]:
        if line.startswith(b"]"):
            break
        out.append(line[:-1] if line.endswith(b",") else line)
    return out
