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
import os
import struct
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
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
SCALARS = list(range(pgbinary.INTERVAL + 1))
#: Array element kinds the reader asks for (pgbinary.column).
ELEMENTS = [pgbinary.TEXT, pgbinary.FLOAT_TEXT, pgbinary.BOOL, pgbinary.INT2, pgbinary.INT4,
            pgbinary.INT8, pgbinary.OID, pgbinary.NUMERIC, pgbinary.JSONB]
CODES = SCALARS + [pgbinary.ARRAY + e for e in ELEMENTS]
ELEMENT_OIDS = {pgbinary.TEXT: 25, pgbinary.FLOAT_TEXT: 25, pgbinary.BOOL: 16, pgbinary.INT2: 21,
                pgbinary.INT4: 23, pgbinary.INT8: 20, pgbinary.OID: 26, pgbinary.NUMERIC: 1700,
                pgbinary.JSONB: 3802}
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
