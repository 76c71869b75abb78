"""Value conversions shared by the sources: driver values to JSON-native values.

The format contract (docs/format.md) says how each source type is written; the functions
here implement the parts that are the same for every dialect. Each source picks one
converter per column once, so the per-row work is a list of plain function calls.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

#: One encoder for all rows. ``decimal_format="number"`` keeps every stored digit of a
#: Decimal (msgspec writes str(Decimal)); we still format Decimals ourselves (see
#: ``decimal_token``) because str() switches to exponent notation below 1e-6.
ENCODER = msgspec.json.Encoder(decimal_format="number")
#: Parses JSON documents held in text columns without losing digits: each non-integer
#: number is kept as its exact text (a Decimal would print 0.0000001 as 1E-7).
_JSON_DECODER = msgspec.json.Decoder(float_hook=lambda s: msgspec.Raw(s.encode()))

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")
_SPECIAL_FLOATS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity", "infinity": "Infinity",
                   "-infinity": "-Infinity"}

Converter = Callable[[Any], Any]


def text(value: str | bytes | bytearray | memoryview) -> str:
    """Drivers hand numbers and dates over as bytes (mysqlclient) or str (PyMySQL)."""
    return value if isinstance(value, str) else bytes(value).decode("ascii")


def number_token(value: str | bytes) -> msgspec.Raw | str:
    """A number exactly as the server printed it; NaN and infinities as strings.

    PostgreSQL's ``row_to_json`` applies the same rule (``IsValidJsonNumber``), which is what
    makes the server-side JSON path byte-identical to this one.
    """
    s = text(value)
    if _JSON_NUMBER.match(s):
        return msgspec.Raw(s.encode())
    return _SPECIAL_FLOATS.get(s.lower(), s)


def float_value(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def decimal_token(value: Decimal) -> msgspec.Raw | str:
    if value.is_finite():
        return msgspec.Raw(format(value, "f").encode())
    return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")


def b64(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(value).decode("ascii")


def decode_json(value: str | bytes) -> Any:
    """Parse a JSON document, keeping every digit (see ``_JSON_DECODER``); raises
    ``msgspec.DecodeError`` when it is not JSON."""
    return _JSON_DECODER.decode(value)


def json_document(value: str | bytes) -> msgspec.Raw:
    """Re-encode a JSON document compactly on one line, keeping key order and every digit.

    One line per row is what JSON Lines needs, and servers store JSON with arbitrary
    whitespace (MariaDB keeps the text as inserted).
    """
    return msgspec.Raw(ENCODER.encode(_JSON_DECODER.decode(value)))


def identity(value: Any) -> Any:
    return value


def nullable(conv: Converter) -> Converter:
    """Wrap a converter so that NULL stays None without each converter checking."""
    if conv is identity:
        return conv

    def convert(value: Any) -> Any:
        return None if value is None else conv(value)

    return convert
