"""Value conversions shared by the sources: driver values to JSON-native values.

The format contract (docs/format.md) says how each source type is written; the functions
here implement the parts that are the same for every dialect. Each source picks one
converter per column once, so the per-row work is a list of plain function calls.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

#: One encoder for all rows. Sources hand numbers over as the server's text
#: (``number_token``), never as Decimals; ``decimal_format="number"`` is for the Decimals that
#: restore's decoders produce (msgspec writes str(Decimal), every stored digit).
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


# -- decoders: the contract's JSON back to values a driver binds (restore) --------------------
#
# A row is parsed with every value left as its JSON text (``RAW_ROW``), and each column's
# decoder, picked once per column by ``column_decoder``, turns that text into the value the
# source held: a json column keeps its exact text (key order, spacing, number spellings), a
# numeric column its digits as a Decimal, a binary column its bytes.

#: A row's values as their JSON text, decoded column by column afterwards.
RAW_ROW = msgspec.json.Decoder(dict[str, msgspec.Raw])
#: One value, every non-integer number a Decimal (never through a float: 0.1 stays 0.1).
_VALUE = msgspec.json.Decoder(float_hook=Decimal)
_NULL = msgspec.Raw(b"null")
_FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: Column shapes ``column_decoder`` tells apart; a target adapts values by shape.
SHAPES = ("array", "bits", "bytes", "float", "json", "numeric", "sqlite", "value")

Decoder = Callable[[msgspec.Raw], Any]


def decode_value(raw: msgspec.Raw) -> Any:
    """The value as JSON has it: None, bool, int, Decimal, str, list, dict."""
    return _VALUE.decode(raw)


def float_from(value: Any) -> float | None:
    """A float column's value: a number (the shortest form that reads back to the same
    double), or one of the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if value is None:
        return None
    return _FLOAT_WORDS[value] if isinstance(value, str) else float(value)


def numeric_from(value: Any) -> int | Decimal | None:
    """A numeric column's exact digits; ``"NaN"`` and the infinities as Decimals."""
    return Decimal(value) if isinstance(value, str) else value


def base64_from(value: Any) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def bits_from(value: Any) -> int | None:
    """MySQL ``BIT(n)``: the string of n binary digits, as the integer the driver binds."""
    return None if value is None else int(value, 2)


def array_from(element_json: bool) -> Callable[[Any], Any]:
    """A PostgreSQL array: nested lists of native values; elements of a json(b) array come
    back as their JSON text, which the server parses again."""

    def text_elements(value: Any) -> Any:
        if isinstance(value, list):
            return [text_elements(v) for v in value]
        return None if value is None else ENCODER.encode(value).decode("utf-8")

    return text_elements if element_json else identity


def sqlite_from(binary: bool, json_column: bool) -> Callable[[Any], Any]:
    """A SQLite value, markers included (docs/format.md, "SQLite"): the storage class it had.
    Non-integer numbers are REALs there, so they come back as floats (the exported number is
    the shortest form of the double, so ``float()`` gives the same bits back)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return float(value)
        if isinstance(value, str):
            return base64.b64decode(value) if binary else value
        if isinstance(value, dict) and len(value) == 1:
            (key, inner), = value.items()
            if key == "$base64":
                return base64.b64decode(inner)
            if key == "$text":
                return inner
            if key == "$text_base64":
                # Text that was not UTF-8: sqlite3 binds only valid UTF-8 as TEXT, so its bytes
                # come back as a blob (docs/restore.md says so).
                return base64.b64decode(inner)
            if key == "$real":
                return _FLOAT_WORDS[inner]
            if key == "$json":
                return ENCODER.encode(inner).decode("utf-8")
        if isinstance(value, dict | list) or (json_column and isinstance(value, bool | int)):
            return ENCODER.encode(value).decode("utf-8")
        return value

    return plain


def decode_float(raw: msgspec.Raw) -> float | None:
    """From the number's text, not through the JSON value: ``-0`` (a double's negative zero,
    as PostgreSQL and MariaDB write it) is the integer 0 to a JSON decoder, and the sign is
    lost; ``float()`` of the text keeps it."""
    text = bytes(raw)
    if text == b"null" or text[:1] == b'"':
        return float_from(_VALUE.decode(raw))
    return float(text)


def decode_numeric(raw: msgspec.Raw) -> int | Decimal | None:
    return numeric_from(_VALUE.decode(raw))


def decode_base64(raw: msgspec.Raw) -> bytes | None:
    return base64_from(_VALUE.decode(raw))


def decode_json_text(raw: msgspec.Raw) -> str | None:
    """A json column's document as it was written (its exact text). JSON ``null`` is SQL NULL:
    the contract writes both the same way."""
    return None if raw == _NULL else bytes(raw).decode("utf-8")


def decode_bits(raw: msgspec.Raw) -> int | None:
    return bits_from(_VALUE.decode(raw))


#: Element types of the arrays whose ``-0`` elements are a double's negative zero.
_FLOAT_ELEMENTS = ("double precision", "float8", "real", "float4")


def _float_words(value: Any) -> Any:
    """A float array's elements as floats: the strings NaN and ±Infinity too."""
    if isinstance(value, list):
        return [_float_words(v) for v in value]
    return _FLOAT_WORDS[value] if isinstance(value, str) else value


def decode_array(element_json: bool, float_elements: bool = False) -> Decoder:
    """``float_elements``: read ``-0`` as -0.0 (a JSON decoder makes it the integer 0, as for
    :func:`decode_float`); the stdlib's parser is slower, so only for float arrays."""
    convert = array_from(element_json)

    def decode(raw: msgspec.Raw) -> Any:
        if float_elements:  # every number a float: psycopg dumps no list of mixed types
            value = json.loads(bytes(raw), parse_float=float, parse_int=float)
            return None if value is None else _float_words(value)
        value = _VALUE.decode(raw)
        return None if value is None else convert(value)

    return decode


def decode_sqlite(binary: bool, json_column: bool) -> Decoder:
    """:func:`sqlite_from` on a value's JSON text; a JSON document in a JSON column keeps its
    exact text (SQLite stored it as text)."""
    plain = sqlite_from(binary, json_column)

    def decode(raw: msgspec.Raw) -> Any:
        if json_column and bytes(raw)[:1] in (b"{", b"["):
            value = _VALUE.decode(raw)
            if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _SQLITE_MARKERS):
                return bytes(raw).decode("utf-8")
            return plain(value)
        return plain(_VALUE.decode(raw))

    return decode


_SQLITE_MARKERS = frozenset({"$base64", "$text", "$text_base64", "$json", "$real"})
_PG_FLOATS = ("real", "double precision")
_MYSQL_FLOATS = ("float", "double", "real")


def column_shape(dialect: str, column: dict[str, Any]) -> str:
    """How the contract wrote a column of ``dialect`` described by ``column`` (its metadata:
    ``type``, ``encoding``): one of :data:`SHAPES`."""
    type_ = str(column.get("type", "")).lower()
    if dialect == "sqlite":
        return "sqlite"
    if column.get("encoding") == "base64":
        return "bytes"
    if dialect == "postgresql":
        if type_.endswith("]"):
            return "array"
        if type_ in ("json", "jsonb"):
            return "json"
        if type_ in _PG_FLOATS:
            return "float"
        if type_.startswith(("numeric", "decimal")):
            return "numeric"
        return "value"
    # mysql and mariadb
    if type_ == "json":
        return "json"
    if type_.startswith(_MYSQL_FLOATS):
        return "float"
    if type_.startswith(("decimal", "numeric")):
        return "numeric"
    if type_.startswith("bit"):
        return "bits"
    return "value"


def column_decoder(dialect: str, column: dict[str, Any], *, json_text: bool = False) -> Decoder:
    """The decoder of one column of a snapshot exported from ``dialect`` (``json_text``: the
    column holds JSON documents whatever its type says, as MariaDB's JSON, a checked
    ``LONGTEXT``). NULL decodes to None in every shape."""
    shape = "json" if json_text else column_shape(dialect, column)
    if shape == "sqlite":
        upper = str(column.get("type", "")).upper()
        return decode_sqlite(column.get("encoding") == "base64" or "BLOB" in upper, "JSON" in upper)
    if shape == "array":
        element = str(column.get("type", "")).lower().rstrip("[]")
        return decode_array(element in ("json", "jsonb"), element in _FLOAT_ELEMENTS)
    return {
        "bits": decode_bits,
        "bytes": decode_base64,
        "float": decode_float,
        "json": decode_json_text,
        "numeric": decode_numeric,
    }.get(shape, decode_value)


#: A whole row, every non-integer number a Decimal: tables without JSON columns are decoded
#: in one call, and only the columns that need it converted afterwards (value_decoder).
ROW = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


def value_decoder(dialect: str, column: dict[str, Any], *,
                  json_text: bool = False) -> tuple[bool, Callable[[Any], Any] | None]:
    """``(needs_raw, convert)``: ``needs_raw`` when the column's value must be decoded from its
    JSON text (:func:`column_decoder`: json documents keep their exact text); else ``convert``
    turns the value :data:`ROW` decoded into the source's value (None: as it is)."""
    shape = "json" if json_text else column_shape(dialect, column)
    if shape in ("json", "float"):  # float: -0 keeps its sign only from its text (decode_float)
        return True, None
    if shape == "sqlite":
        upper = str(column.get("type", "")).upper()
        if "JSON" in upper:
            return True, None
        return False, sqlite_from(column.get("encoding") == "base64" or "BLOB" in upper, False)
    if shape == "array":
        element = str(column.get("type", "")).lower().rstrip("[]")
        if element in _FLOAT_ELEMENTS:
            return True, None  # -0 elements: decode_array
        return False, array_from(element in ("json", "jsonb"))
    convert: dict[str, Callable[[Any], Any]] = {"bits": bits_from, "bytes": base64_from,
                                                "float": float_from, "numeric": numeric_from}
    return False, convert.get(shape)
