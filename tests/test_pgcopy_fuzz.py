"""Fuzzing the binary COPY decoder (sqlsnap/_pgdecode.c) without a server, through
``_pgcopy.decode``: random tuples of random bytes, truncated messages and random values of
known types. It never crashes, never writes invalid JSON, refuses what is malformed (and then
writes nothing), and writes well-formed values as the contract says.

These tests and tests/test_pgcopy.py also passed (2026-12-06, five hypothesis seeds) with the
extension built with ``-fsanitize=address,undefined`` into a copy of the package, run as
``PYTHONPATH=<copy> LD_PRELOAD="$(gcc -print-file-name=libasan.so)
$(gcc -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0 .venv/bin/python -m pytest ...``.
"""

from __future__ import annotations

import base64
import json
import math
import os
import struct
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlsnap.sources import pgbinary

try:
    from sqlsnap import _pgcopy  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - without a compiler
    _pgcopy = None


@pytest.fixture(autouse=True)
def c_extension() -> None:
    if _pgcopy is None:
        if os.environ.get("SQLSNAP_REQUIRE_SERVERS"):
            pytest.fail("sqlsnap._pgcopy is not built (pip install -e . needs gcc)")
        pytest.skip("sqlsnap._pgcopy is not built")


HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
SCALARS = list(range(pgbinary.FLOAT8 + 1))
#: Array element kinds the reader asks for (pgbinary.column).
ELEMENTS = [pgbinary.TEXT, pgbinary.FLOAT_TEXT, pgbinary.BOOL, pgbinary.INT2, pgbinary.INT4,
            pgbinary.INT8, pgbinary.OID, pgbinary.NUMERIC, pgbinary.JSONB, pgbinary.FLOAT4, pgbinary.FLOAT8]
CODES = SCALARS + [pgbinary.ARRAY + e for e in ELEMENTS]
ELEMENT_OIDS = {pgbinary.TEXT: 25, pgbinary.FLOAT_TEXT: 25, pgbinary.BOOL: 16, pgbinary.INT2: 21,
                pgbinary.INT4: 23, pgbinary.INT8: 20, pgbinary.OID: 26, pgbinary.NUMERIC: 1700,
                pgbinary.JSONB: 3802, pgbinary.FLOAT4: 700, pgbinary.FLOAT8: 701}
#: Decimals with 0 to 40 places, as numeric holds them (its exponent is never positive).
DECIMALS = st.builds(lambda n, p: Decimal(n).scaleb(-p), st.integers(-(10**45), 10**45), st.integers(0, 40))
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def program(codes: list[int], null_mode: int = pgbinary.NULL_JSON) -> Any:
    ops = [((b"{" if i == 0 else b",") + f'"c{i}":'.encode(), i, null_mode) for i in range(len(codes))]
    ops.append((b"}\n" if codes else b"{}\n", -1, 0))
    return _pgcopy.program(bytes(codes), ops)


def tuple_message(fields: list[bytes | None]) -> bytes:
    out = [struct.pack("!h", len(fields))]
    for f in fields:
        out.append(struct.pack("!i", -1) if f is None else struct.pack("!i", len(f)) + f)
    return b"".join(out)


def decode(codes: list[int], rows: list[list[bytes | None]]) -> tuple[int, bytes, int, str]:
    messages = [tuple_message(r) for r in rows]
    messages = [HEADER + messages[0], *messages[1:]] if messages else [HEADER]
    messages.append(TRAILER)
    return _pgcopy.decode(program(codes), messages)  # type: ignore[no-any-return]


def check_output(status: int, data: bytes, rows: int, reason: str, ncols: int) -> None:
    """Either refused with a reason and nothing written, or one valid JSON object a row."""
    if status == _pgcopy.BAD:
        assert data == b"" and rows == 0 and reason
        return
    assert status == _pgcopy.DONE, (status, reason)
    lines = data.split(b"\n")
    assert lines.pop() == b"" and len(lines) == rows
    for line in lines:
        obj = json.loads(line.decode("utf-8"))  # strict: invalid UTF-8 or JSON raises
        assert list(obj) == [f"c{i}" for i in range(ncols)]


@FUZZ
@given(st.lists(st.sampled_from(CODES), max_size=6).flatmap(
    lambda codes: st.tuples(st.just(codes), st.lists(
        st.lists(st.none() | st.binary(max_size=40), min_size=len(codes), max_size=len(codes)),
        max_size=4))))
def test_random_tuples_never_crash_nor_write_invalid_json(
    case: tuple[list[int], list[list[bytes | None]]]
) -> None:
    codes, rows = case
    check_output(*decode(codes, rows), len(codes))


def array(oid: int, dims: list[tuple[int, int]], elements: list[bytes | None]) -> bytes:
    head = struct.pack("!iiI", len(dims), int(any(e is None for e in elements)), oid)
    head += b"".join(struct.pack("!ii", n, lb) for n, lb in dims)
    body = b"".join(struct.pack("!i", -1) if e is None else struct.pack("!i", len(e)) + e for e in elements)
    return head + body


@FUZZ
@given(st.sampled_from(ELEMENTS), st.lists(st.integers(0, 3), min_size=1, max_size=3),
       st.data())
def test_random_arrays_never_crash_nor_write_invalid_json(element: int, shape: list[int], data: Any) -> None:
    n = 1
    for d in shape:
        n *= d
    elements = data.draw(st.lists(st.none() | st.binary(max_size=12), min_size=n, max_size=n))
    # Sometimes a lie in the header: a wrong count, dimension or element type.
    lie = data.draw(st.sampled_from(["none", "count", "oid", "extra"]))
    oid = ELEMENT_OIDS[element] if lie != "oid" else 1
    dims = [(d, data.draw(st.integers(-3, 3))) for d in shape]
    if lie == "count":
        elements = elements[:-1] if elements else [b"x"]
    raw = array(oid, dims, elements) + (b"\x00" if lie == "extra" else b"")
    check_output(*decode([pgbinary.ARRAY + element], [[raw]]), 1)


@FUZZ
@given(st.data())
def test_truncated_messages_are_refused(data: Any) -> None:
    """Every cut of a valid message is refused, and nothing of it is written."""
    codes = [pgbinary.INT4, pgbinary.TEXT, pgbinary.NUMERIC, pgbinary.ARRAY + pgbinary.INT8]
    row: list[bytes | None] = [struct.pack("!i", data.draw(st.integers(-(2**31), 2**31 - 1))),
                               data.draw(st.text(max_size=20)).encode("utf-8", "surrogatepass"),
                               numeric(abs(data.draw(DECIMALS))),
                               array(20, [(2, 1)], [struct.pack("!q", 1), None])]
    message = HEADER + tuple_message(row)
    status, out, rows, _ = _pgcopy.decode(program(codes), [message, TRAILER])
    if status == _pgcopy.BAD:  # a lone surrogate in the text: refused as not UTF-8
        assert out == b""
        return
    assert rows == 1
    cut = data.draw(st.integers(0, len(message) - 1))
    status, out, rows, reason = _pgcopy.decode(program(codes), [message[:cut], TRAILER])
    if cut == len(HEADER):  # the header alone, then the trailer: a COPY of no rows
        assert (status, out, rows) == (_pgcopy.DONE, b"", 0)
    else:
        assert (status, out, rows) == (_pgcopy.BAD, b"", 0) and reason
    status, out, rows, reason = _pgcopy.decode(program(codes), [message])  # no trailer
    assert (status, out, rows) == (_pgcopy.BAD, b"", 0) and reason == "the COPY ended without its trailer"


# -- well-formed values of known types: written as the contract says --------------------------

def numeric(d: Decimal) -> bytes:
    """numeric_send of d (numeric.c): base-10000 digits, weight, sign, dscale."""
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    dscale = max(0, -exp)
    text = "".join(map(str, digits))
    # Align the decimal point to a multiple of 4 digits on both sides.
    point = len(text) + exp  # digits before the point
    int_part = text[:point] if point > 0 else ""
    frac_part = text[point:] if point >= 0 else "0" * -point + text
    if point > len(text):
        int_part = text + "0" * (point - len(text))
        frac_part = ""
    int_part = "0" * (-len(int_part) % 4) + int_part
    frac_part = frac_part + "0" * (-len(frac_part) % 4)
    groups = [int(int_part[i:i + 4]) for i in range(0, len(int_part), 4)]
    weight = len(groups) - 1
    groups += [int(frac_part[i:i + 4]) for i in range(0, len(frac_part), 4)]
    while groups and groups[0] == 0:  # as the server strips them
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    return struct.pack("!hhHh", len(groups), weight, 0x4000 if sign and groups else 0, dscale) + \
        b"".join(struct.pack("!H", g) for g in groups)


def one(code: int, raw: bytes | None) -> Any:
    status, data, rows, reason = decode([code], [[raw]])
    assert status == _pgcopy.DONE and rows == 1, reason
    return data[len(b'{"c0":'):-2]


@FUZZ
@given(DECIMALS)
def test_numeric_keeps_every_digit(d: Decimal) -> None:
    if d.is_zero():
        d = abs(d)  # the server never sends a negative zero
    assert one(pgbinary.NUMERIC, numeric(d)).decode() == format(d, "f")


def test_numeric_specials_and_zero() -> None:
    for sign, text in ((0xC000, b'"NaN"'), (0xD000, b'"Infinity"'), (0xF000, b'"-Infinity"')):
        assert one(pgbinary.NUMERIC, struct.pack("!hhHh", 0, 0, sign, 0)) == text
    assert one(pgbinary.NUMERIC, struct.pack("!hhHh", 0, 0, 0, 3)) == b"0.000"
    assert one(pgbinary.NUMERIC, numeric(Decimal("0.0000001"))) == b"0.0000001"
    assert one(pgbinary.NUMERIC, numeric(Decimal("1E+40"))) == b"1" + b"0" * 40


@FUZZ
@given(st.integers(-(2**63), 2**63 - 1))
def test_integers(v: int) -> None:
    assert one(pgbinary.INT8, struct.pack("!q", v)) == str(v).encode()
    assert one(pgbinary.INT4, struct.pack("!i", v % 2**32 - 2**31)) == str(v % 2**32 - 2**31).encode()
    assert one(pgbinary.INT2, struct.pack("!h", v % 2**16 - 2**15)) == str(v % 2**16 - 2**15).encode()
    assert one(pgbinary.OID, struct.pack("!I", v % 2**32)) == str(v % 2**32).encode()


EPOCH = datetime(2000, 1, 1)


def iso(dt: datetime) -> str:
    text = dt.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0")
    fraction = f".{dt.microsecond:06d}".rstrip("0") if dt.microsecond else ""
    return f"{dt.year:04d}{text[text.index('-'):]}{fraction}"


@FUZZ
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)))
def test_timestamps_dates_and_times_in_the_common_era(dt: datetime) -> None:
    us = (dt - EPOCH) // timedelta(microseconds=1)
    assert one(pgbinary.TIMESTAMP, struct.pack("!q", us)) == f'"{iso(dt)}"'.encode()
    assert one(pgbinary.TIMESTAMPTZ, struct.pack("!q", us)) == f'"{iso(dt)}Z"'.encode()
    days = (dt.date() - EPOCH.date()).days
    assert one(pgbinary.DATE, struct.pack("!i", days)) == f'"{iso(dt)[:10]}"'.encode()
    t = us % (86400 * 10**6)
    assert one(pgbinary.TIME, struct.pack("!q", t)) == f'"{iso(dt)[11:]}"'.encode()


def test_special_and_bc_timestamps() -> None:
    assert one(pgbinary.TIMESTAMP, struct.pack("!q", 2**63 - 1)) == b'"infinity"'
    assert one(pgbinary.TIMESTAMPTZ, struct.pack("!q", -(2**63))) == b'"-infinity"'
    assert one(pgbinary.DATE, struct.pack("!i", 2**31 - 1)) == b'"infinity"'
    # 0001-01-01 BC (year 0) is the day before 0001-01-01.
    day0 = (datetime(1, 1, 1) - EPOCH).days - 1
    assert one(pgbinary.DATE, struct.pack("!i", day0)) == b'"0001-12-31 BC"'
    assert one(pgbinary.TIMESTAMPTZ, struct.pack("!q", day0 * 86400 * 10**6 + 1)) == \
        b'"0001-12-31T00:00:00.000001Z BC"'
    assert decode([pgbinary.TIMESTAMP], [[struct.pack("!q", 2**63 - 2)]])[0] == _pgcopy.BAD


@FUZZ
@given(st.text(), st.binary(), st.uuids())
def test_text_bytea_and_uuid(text: str, data: bytes, u: uuid.UUID) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    status, out, _, reason = decode([pgbinary.TEXT], [[raw]])
    if "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert status == _pgcopy.BAD and out == b"" and reason  # never from a UTF-8 server
    else:
        assert json.loads(out)["c0"] == text
    assert one(pgbinary.BYTEA, data) == f'"{base64.b64encode(data).decode()}"'.encode()
    assert one(pgbinary.UUID, u.bytes) == f'"{u}"'.encode()


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids), max_leaves=20))
def test_jsonb_and_json_are_written_as_they_are(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return
    assert one(pgbinary.JSONB, b"\x01" + text.encode()) == text.encode()
    spaced = "\n\t" + json.dumps(value, indent="\t") + "\r\n"
    out = one(pgbinary.JSON, spaced.encode())
    assert json.loads(out) == value and b"\n" not in out and b"\t" not in out


def test_null_modes() -> None:
    prog = _pgcopy.program(bytes([pgbinary.INT4, pgbinary.TEXT]),
                           [(b"", 0, pgbinary.NULL_EMPTY), (b"\x02", 1, pgbinary.NULL_JSON), (b"\n", -1, 0)])
    status, out, rows, _ = _pgcopy.decode(prog, [HEADER + tuple_message([None, None]), TRAILER])
    assert (status, out, rows) == (_pgcopy.DONE, b"\x02null\n", 1)


def test_bad_programs_are_refused() -> None:
    with pytest.raises(ValueError):
        _pgcopy.program(bytes([99]), [])
    with pytest.raises(ValueError):
        _pgcopy.program(bytes([pgbinary.INT4]), [(b"", 1, 0)])


@pytest.mark.parametrize("special", ['"', "\\", "\x01", "\x1f", "\n", "é", "😀", "\x7f", " ", "~"])
def test_a_special_character_at_every_position_of_long_text(special: str) -> None:
    """The decoder tests 8 bytes at a time for characters to escape (special8 in _pgdecode.c):
    one at every offset, in text and inside a jsonb string, is still seen."""
    for at in range(40):
        text = "a" * at + special + "x" * (40 - at)
        assert json.loads(one(pgbinary.TEXT, text.encode())) == text
        doc = json.dumps({"k": text}, ensure_ascii=False)
        assert one(pgbinary.JSONB, b"\x01" + doc.encode()) == doc.encode()
        if special in ('"', "\\", "\x01", "\x1f", "\n"):  # raw inside a JSON string: refused
            raw = '{"k": "' + text + '"}'
            assert decode([pgbinary.JSONB], [[b"\x01" + raw.encode()]])[0] == _pgcopy.BAD, (special, at)


# -- floats (sqlsnap/_pgfloat.c): the server's digits, from an exact reference ----------------

WIDTHS = {64: ("!d", "!Q", 52, 15, pgbinary.FLOAT8), 32: ("!f", "!I", 23, 6, pgbinary.FLOAT4)}


def from_bits(bits: int, width: int) -> float:
    value, whole = WIDTHS[width][:2]
    return float(struct.unpack(value, struct.pack(whole, bits))[0])


def shortest_text(bits: int, width: int) -> str:
    """float8out/float4out's text (PostgreSQL 12+, extra_float_digits > 0), by the rule and
    exact arithmetic rather than by Ryu: of the decimals strictly between the halfway points
    to the neighbouring floats, those with the fewest digits; of them the closest, ties to an
    even last digit; fixed notation for exponents -4 to 14 (float4: 5)."""
    fixed_below = WIDTHS[width][3]
    sign, magnitude = bits >> (width - 1), bits & ((1 << (width - 1)) - 1)
    v = from_bits(magnitude, width)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v) or v == 0:
        return ("-" if sign else "") + ("Infinity" if math.isinf(v) else "0")
    exact = Fraction(v)
    below = Fraction(from_bits(magnitude - 1, width))
    above_value = from_bits(magnitude + 1, width)
    above = 2 * exact - below if math.isinf(above_value) else Fraction(above_value)
    low, high = (exact + below) / 2, (exact + above) / 2
    e = math.floor(math.log10(v))
    e += (Fraction(10) ** (e + 1) <= exact) - (Fraction(10) ** e > exact)
    for n in range(1, 18):
        unit = Fraction(10) ** (e - n + 1)
        scaled = exact / unit
        nearest = round(scaled)  # Fraction rounds half to even
        for candidate in sorted((nearest, nearest - 1, nearest + 1), key=lambda c: (abs(c - scaled), c % 2)):
            if low < candidate * unit < high:
                digits = str(candidate).rstrip("0")
                exp10 = e - n + 1 + len(str(candidate)) - len(digits)
                return ("-" if sign else "") + pg_format(digits, exp10, fixed_below)
    raise AssertionError("no candidate")


def pg_format(digits: str, exp10: int, fixed_below: int) -> str:
    first = exp10 + len(digits) - 1
    if -4 <= first < fixed_below:
        if exp10 >= 0:
            return digits + "0" * exp10
        if first >= 0:
            return digits[:first + 1] + "." + digits[first + 1:]
        return "0." + "0" * (-first - 1) + digits
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mantissa}e{'-' if first < 0 else '+'}{abs(first):02d}"


def float_json(bits: int, width: int) -> bytes:
    text = shortest_text(bits, width)
    return (f'"{text}"' if text in ("NaN", "Infinity", "-Infinity") else text).encode()


def bits_of(value: float, width: int) -> int:
    fmt, whole = WIDTHS[width][:2]
    return int(struct.unpack(whole, struct.pack(fmt, value))[0])


def test_float_edge_cases() -> None:
    # Pairs, not a dict: 0.0 and -0.0 are equal keys.
    cases = {
        64: [(0.0, "0"), (-0.0, "-0"), (1e15, "1e+15"), (1e-05, "1e-05"), (0.0001, "0.0001"),
             (0.1, "0.1"), (123456789012345.0, "123456789012345"), (1e14, "100000000000000"),
             (1e16, "1e+16"), (0.1 + 0.2, "0.30000000000000004"), (5e-324, "5e-324"),
             (1.7976931348623157e308, "1.7976931348623157e+308"),
             (1.2345678901234567e300, "1.2345678901234567e+300"),
             (-2.5e-5, "-2.5e-05"), (1e100, "1e+100"), (math.inf, "Infinity"), (-math.inf, "-Infinity"),
             (math.nan, "NaN"), (2.0**63, "9.223372036854776e+18")],
        32: [(0.0, "0"), (-0.0, "-0"), (3.4028234663852886e38, "3.4028235e+38"), (1e6, "1e+06"),
             (999999.0, "999999"), (123456.0, "123456"), (2.0**24, "1.6777216e+07"), (0.1, "0.1"),
             (1e-05, "1e-05"), (1.401298464324817e-45, "1e-45"), (math.nan, "NaN"), (-math.inf, "-Infinity")],
    }
    for width, values in cases.items():
        code = WIDTHS[width][4]
        for value, text in values:
            bits = bits_of(value, width)
            assert shortest_text(bits, width) == text, (value, text)
            json_text = f'"{text}"' if text in ("NaN", "Infinity", "-Infinity") else text
            assert one(code, struct.pack(WIDTHS[width][1], bits)) == json_text.encode(), (value, text)
    # A NaN of any payload and sign is "NaN", as the server writes it.
    assert one(pgbinary.FLOAT8, struct.pack("!Q", 0xFFF8000000000123)) == b'"NaN"'
    assert one(pgbinary.FLOAT4, struct.pack("!I", 0x7FC00001)) == b'"NaN"'


@FUZZ
@given(st.integers(0, 2**64 - 1) | st.floats().map(lambda v: bits_of(v, 64)))
def test_float8_digits_are_the_shortest_closest(bits: int) -> None:
    assert one(pgbinary.FLOAT8, struct.pack("!Q", bits)) == float_json(bits, 64)


@FUZZ
@given(st.integers(0, 2**32 - 1) | st.floats(width=32).map(lambda v: bits_of(v, 32)))
def test_float4_digits_are_the_shortest_closest(bits: int) -> None:
    assert one(pgbinary.FLOAT4, struct.pack("!I", bits)) == float_json(bits, 32)


def test_powers_of_two_and_ten_and_their_neighbours() -> None:
    """Where the gap below a float is half the gap above (powers of two), and where the
    exponent form starts (powers of ten), each float and its neighbours."""
    for width, exponents in ((64, range(-1074, 1024)), (32, range(-149, 128))):
        fmt, whole, _, _, code = WIDTHS[width]
        values = [(2.0 ** k, 0) for k in exponents]
        values += [(10.0 ** k, 1) for k in range(-300 if width == 64 else -40, 39)]
        for value, above in values:
            try:
                base = bits_of(value, width)
            except OverflowError:
                continue
            for bits in range(base - 1, base + 1 + above):
                if 0 < bits < (0x7FF << 52 if width == 64 else 0xFF << 23):
                    assert one(code, struct.pack(whole, bits)) == float_json(bits, width), (width, bits)


def test_a_float_of_the_wrong_size_is_refused() -> None:
    short_element = array(701, [(1, 1)], [b"\x00" * 4])
    for code, raw in ((pgbinary.FLOAT8, struct.pack("!f", 1.5)), (pgbinary.FLOAT4, struct.pack("!d", 1.5)),
                      (pgbinary.FLOAT8, b""), (pgbinary.ARRAY + pgbinary.FLOAT8, short_element)):
        status, out, rows, reason = decode([code], [[raw]])
        assert (status, out, rows) == (_pgcopy.BAD, b"", 0)
        assert reason == "a value of the wrong size or out of its type's range"
    # An array of float4 where float8 was asked for: refused by its element type.
    status, _, _, reason = decode([pgbinary.ARRAY + pgbinary.FLOAT8], [[array(700, [(1, 1)], [b"\x00" * 4])]])
    assert status == _pgcopy.BAD and reason == "a malformed array"


def test_the_float_tables_are_generated() -> None:
    """src/sqlsnap/_pgfloat_tables.h is what scripts/gen_float_tables.py writes."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "gen_float_tables.py"
    assert subprocess.run([sys.executable, str(script), "--check"], timeout=60).returncode == 0, \
        "src/sqlsnap/_pgfloat_tables.h is stale: run .venv/bin/python scripts/gen_float_tables.py"
