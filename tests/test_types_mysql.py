"""Every MySQL/MariaDB column type, round-tripped through an export and compared value by
value with the format contract (docs/format.md, "Values").

The database is built once per module with PyMySQL and exported once per driver sqlsnap
supports (mysqlclient when installed, PyMySQL otherwise): both must write the same values.
Rows are inserted from a session in UTC+02:00, so TIMESTAMP columns prove the UTC
normalization.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

import sqlsnap
import sqlsnap.sources.mysql as mysql_source
from tests._numbers import Tok, data_lines, decimals, load
from tests.conftest import _mysql_admin, mysql_connect, unique_name

pytestmark = pytest.mark.mysql


SCHEMA = [
    "CREATE TABLE ints (id int PRIMARY KEY, ti tinyint, uti tinyint unsigned, si smallint, mi mediumint,"
    " ii int, ui int unsigned, bi bigint, ub bigint unsigned, tb tinyint(1))",
    "INSERT INTO ints VALUES (1, -128, 0, -32768, -8388608, -2147483648, 0, -9223372036854775808, 0, 0),"
    " (2, 127, 255, 32767, 8388607, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615, 1),"
    " (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "CREATE TABLE decimals (id int PRIMARY KEY, d decimal(65,30), d0 decimal(65,0), d2 decimal(10,2))",
    "INSERT INTO decimals VALUES"
    " (1, '12345678901234567890123456789012345.123456789012345678901234567890', '" + "9" * 65 + "', 0.1),"
    " (2, 0.0000001, -1, -99999999.99), (3, '-0.000000000000000000000000000001', 0, 0),"
    " (4, NULL, NULL, NULL)",
    "CREATE TABLE floats (id int PRIMARY KEY, f float, d double)",
    "INSERT INTO floats VALUES (1, 1.1, 1.1), (2, 3.4e38, 1.7976931348623157e308), (3, 1e-7, 5e-324),"
    " (4, -1.5, 0.30000000000000004), (5, 1e20, 1e20), (6, NULL, NULL)",
    "CREATE TABLE bits (id int PRIMARY KEY, b1 bit(1), b8 bit(8), b12 bit(12), b64 bit(64))",
    "INSERT INTO bits VALUES (1, b'1', b'10100101', b'000000000101', b'" + "1" * 64 + "'),"
    " (2, b'0', 0, 0, 0), (3, NULL, NULL, NULL, NULL)",
    "CREATE TABLE strings (id int PRIMARY KEY, c char(5), vc varchar(60), tx text, lt longtext,"
    " e enum('a','b c','é'), st set('x','y','z'), lat varchar(20) CHARACTER SET latin1)",
    "CREATE TABLE binaries (id int PRIMARY KEY, bn binary(4), vb varbinary(10), bl blob, tbl tinyblob,"
    " lb longblob)",
    "CREATE TABLE jsons (id int PRIMARY KEY, j json, `my json` json)",
    # JSON columns with awkward names, and text columns whose checks do not make them JSON.
    "CREATE TABLE json_checks (id int PRIMARY KEY, `a)b` json, `we``ird` json,"
    " c text CHECK (json_valid(c) OR c = ''), `json_valid(x)` text)",
    "INSERT INTO json_checks VALUES (1, '{\"x\": 1}', '[1, 2]', '', 'not json'),"
    " (2, 'null', '\"s\"', '{\"a\": 1}', '{}')",
    "CREATE TABLE times (id int PRIMARY KEY, d date, dt datetime, dt6 datetime(6),"
    " ts timestamp NULL DEFAULT NULL, ts3 timestamp(3) NULL DEFAULT NULL, tm time, tm6 time(6), y year)",
    "INSERT INTO times VALUES"
    " (1, '2026-11-22', '2026-11-22 14:30:00', '2026-11-22 14:30:00.5', '2026-11-22 14:30:00',"
    "     '2026-11-22 14:30:00.123', '10:00:00', '12:00:00.5', 2026),"
    " (2, '1000-01-01', '9999-12-31 23:59:59', '1000-01-01 00:00:00.000001', '1970-01-01 02:00:01',"
    "     '2038-01-19 05:14:07.999', '-838:59:59', '-00:00:01.5', 1901),"
    " (3, NULL, NULL, NULL, NULL, NULL, '838:59:59', '100:00:00', 2155),"
    " (4, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', NULL,"
    "     '00:00:00', NULL, 0),"
    " (5, '2026-00-00', NULL, NULL, NULL, NULL, NULL, NULL, NULL),"
    " (6, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "CREATE TABLE geo (id int PRIMARY KEY, g geometry, p point, ls linestring, pg polygon)",
    "INSERT INTO geo VALUES (1, ST_GeomFromText('POINT(1 2)'), POINT(1.5, -2),"
    " ST_GeomFromText('LINESTRING(0 0,1 1,2 0)'), ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))')),"
    " (2, NULL, NULL, NULL, NULL)",
]

CONTROL = "".join(chr(i) for i in range(1, 32)) + "\x7f"
STRINGS = {
    1: ("ab", "single ' double \" backslash \\ end", "line1\nline2\r\n\ttab", CONTROL, "a", "x,z", "café"),
    2: ("abcde", "emoji 😀 日本 \u2028", "", "x" * 70000, "b c", "", ""),
    3: ("", "", "😀" * 3, "", "é", "y", None),
    4: (None, None, None, None, None, None, None),
}
BINARIES = {
    1: (b"\x00\xff", b"\x00\x01\x02", bytes(range(256)) * 4, b"", b"\xff"),
    2: (b"abcd", b"", b"\n", b"'\"\\", b"\x00" * 1000),
    3: (None, None, None, None, None),
}
JSONS = {
    1: '{"b": [1, 2.50, {"c": null, "d": [true, false]}],   "a": "x\\ny",'
       ' "n": 12345678901234567890.123456789, "big": 123456789012345678901234567890}',
    2: '[1, "two", null, [], {}]',
    3: '"just a string"',
    4: "42",
    5: "null",
    6: '{"e": "\\u00e9😀", "small": 0.0000001, "huge": 1e400, "neg": -0.0, "exp": 1.5E-3}',
}


@dataclass
class Export:
    raw: bytes
    doc: Any

    def rows(self, table: str) -> dict[int, dict[str, Any]]:
        return {row["id"]: row for row in self.doc["data"][table]}

    def column(self, table: str, name: str) -> dict[str, Any]:
        return next(c for c in self.doc["metadata"]["tables"][table]["columns"] if c["name"] == name)


@pytest.fixture(scope="module")
def types_db() -> Iterator[str]:
    name = unique_name()
    admin = _mysql_admin()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    url = f"mysql://root@127.0.0.1:3306/{name}"
    try:
        conn = mysql_connect(url)
        with conn.cursor() as cur:
            # Zero dates need a permissive mode; the session zone is UTC+2 for TIMESTAMP.
            cur.execute("SET SESSION sql_mode = ''")
            cur.execute("SET SESSION time_zone = '+02:00'")
            for stmt in SCHEMA:
                cur.execute(stmt)
            for i, row in STRINGS.items():
                cur.execute("INSERT INTO strings VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", (i, *row))
            for i, row in BINARIES.items():
                cur.execute("INSERT INTO binaries VALUES (%s, %s, %s, %s, %s, %s)", (i, *row))
            for i, text in JSONS.items():
                cur.execute("INSERT INTO jsons VALUES (%s, %s, %s)", (i, text, text))
            cur.execute("INSERT INTO jsons VALUES (7, NULL, NULL)")
            # A bulk load with checks off leaves text that is not JSON in a JSON column.
            cur.execute("SET SESSION check_constraint_checks = 0")
            cur.execute("INSERT INTO jsons VALUES (8, 'not json {', '')")
            cur.execute("SET SESSION check_constraint_checks = 1")
        conn.close()
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(scope="module", params=["default-driver", "pymysql"])
def exported(request: pytest.FixtureRequest, types_db: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Export]:
    out = tmp_path_factory.mktemp("mytypes") / "out.json"
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "pymysql":
            import pymysql

            mp.setattr(mysql_source, "_driver", lambda: pymysql)
        sqlsnap.export(types_db, str(out))
    raw = out.read_bytes()
    yield Export(raw, load(raw))


def test_integers_including_bigint_unsigned_max(exported: Export) -> None:
    rows = exported.rows("ints")
    assert rows[1] == {"id": 1, "ti": -128, "uti": 0, "si": -32768, "mi": -8388608, "ii": -2147483648,
                       "ui": 0, "bi": -9223372036854775808, "ub": 0, "tb": 0}
    assert rows[2] == {"id": 2, "ti": 127, "uti": 255, "si": 32767, "mi": 8388607, "ii": 2147483647,
                       "ui": 4294967295, "bi": 9223372036854775807, "ub": 18446744073709551615, "tb": 1}
    assert all(v is None for k, v in rows[3].items() if k != "id")
    assert b'"ub":18446744073709551615,' in exported.raw
    # TINYINT(1) is an integer, not a boolean.
    assert b'"tb":1}' in exported.raw
    assert exported.column("ints", "ub")["type"] == "bigint(20) unsigned"


def test_decimal_keeps_every_digit_without_exponent(exported: Export) -> None:
    rows = exported.rows("decimals")
    big = "12345678901234567890123456789012345.123456789012345678901234567890"
    assert rows[1]["d"] == big and isinstance(rows[1]["d"], Tok)
    assert Decimal(rows[1]["d"]) == Decimal(big)
    assert rows[1]["d0"] == int("9" * 65)
    assert rows[1]["d2"] == "0.10"
    assert rows[2]["d"] == "0.000000100000000000000000000000"
    assert rows[2]["d0"] == -1 and rows[2]["d2"] == "-99999999.99"
    assert rows[3]["d"] == "-0.000000000000000000000000000001"
    assert rows[3]["d2"] == "0.00"
    assert all(v is None for k, v in rows[4].items() if k != "id")
    assert f'"d":{big},'.encode() in exported.raw
    assert ('"d0":' + "9" * 65).encode() in exported.raw
    for line in data_lines(exported.raw, "decimals"):
        assert b"e" not in line.lower(), line
    assert exported.column("decimals", "d")["type"] == "decimal(65,30)"


def test_float_and_double(exported: Export) -> None:
    rows = exported.rows("floats")

    def f32(x: float) -> float:
        return struct.unpack("f", struct.pack("f", x))[0]

    inserted = {1: 1.1, 2: (3.4e38, 1.7976931348623157e308), 3: (1e-7, 5e-324),
                4: (-1.5, 0.30000000000000004), 5: 1e20}
    for i, values in inserted.items():
        f, d = values if isinstance(values, tuple) else (values, values)
        assert isinstance(rows[i]["f"], Tok) and isinstance(rows[i]["d"], Tok), i
        assert f32(float(rows[i]["f"])) == f32(f), i
        assert float(rows[i]["d"]) == d, i
    assert rows[1] == {"id": 1, "f": "1.1", "d": "1.1"}
    assert rows[6] == {"id": 6, "f": None, "d": None}


def test_bit_columns_are_binary_digit_strings(exported: Export) -> None:
    rows = exported.rows("bits")
    assert rows[1] == {"id": 1, "b1": "1", "b8": "10100101", "b12": "000000000101", "b64": "1" * 64}
    assert rows[2] == {"id": 2, "b1": "0", "b8": "00000000", "b12": "0" * 12, "b64": "0" * 64}
    assert rows[3] == {"id": 3, "b1": None, "b8": None, "b12": None, "b64": None}


def test_char_varchar_text_enum_and_set(exported: Export) -> None:
    rows = exported.rows("strings")
    for i, (c, vc, tx, lt, e, st, lat) in STRINGS.items():
        # MySQL removes CHAR padding when it reads the value: "ab" comes back as stored text.
        assert rows[i] == {"id": i, "c": c, "vc": vc, "tx": tx, "lt": lt, "e": e, "st": st,
                           "lat": lat}, i
    assert exported.column("strings", "e")["type"] == "enum('a','b c','é')"
    assert exported.column("strings", "st")["type"] == "set('x','y','z')"
    assert len(data_lines(exported.raw, "strings")) == len(STRINGS)
    assert b'"tx":"line1\\nline2\\r\\n\\ttab"' in exported.raw


def test_binary_types_are_base64(exported: Export) -> None:
    rows = exported.rows("binaries")
    names = ["bn", "vb", "bl", "tbl", "lb"]
    for i, values in BINARIES.items():
        for name, data in zip(names, values):
            value = rows[i][name]
            if data is None:
                assert value is None
                continue
            if name == "bn":
                data = data.ljust(4, b"\x00")  # BINARY(4) pads with zero bytes
            assert base64.b64decode(value, validate=True) == data, (i, name)
    assert rows[1]["bn"] == "AP8AAA=="
    for name in names:
        assert exported.column("binaries", name)["encoding"] == "base64"


def test_json_is_written_as_json_with_every_digit(exported: Export) -> None:
    rows = exported.rows("jsons")
    for i, text in JSONS.items():
        expected = json.loads(text, parse_float=Decimal)
        assert decimals(rows[i]["j"]) == expected, i
        assert decimals(rows[i]["my json"]) == expected, i
    assert rows[1]["j"]["b"][1] == "2.50"
    assert rows[1]["j"]["big"] == 123456789012345678901234567890
    assert rows[6]["j"]["e"] == "é😀"
    assert rows[7] == {"id": 7, "j": None, "my json": None}
    assert rows[8] == {"id": 8, "j": "not json {", "my json": ""}  # the export does not fail
    # A JSON value, compact, not a string holding JSON (row 3 holds a JSON string).
    for line in data_lines(exported.raw, "jsons"):
        if json.loads(line)["id"] not in (3, 8):
            assert b'"j":"' not in line and b'": ' not in line, line


def test_json_numbers_keep_their_written_form(exported: Export) -> None:
    """MariaDB keeps the JSON text as inserted: 0.0000001 must not become 1E-7."""
    row = exported.rows("jsons")[6]["j"]
    assert (row["small"], row["huge"], row["neg"], row["exp"]) == ("0.0000001", "1e400", "-0.0", "1.5E-3")
    assert b'"small":0.0000001,' in exported.raw


def test_json_columns_found_by_their_exact_check(exported: Export) -> None:
    rows = exported.rows("json_checks")
    assert rows[1] == {"id": 1, "a)b": {"x": 1}, "we`ird": [1, 2], "c": "", "json_valid(x)": "not json"}
    # c may hold text that is not JSON, so it is a text column: its JSON-looking text stays text.
    assert rows[2] == {"id": 2, "a)b": None, "we`ird": "s", "c": '{"a": 1}', "json_valid(x)": "{}"}


def test_dates_datetimes_timestamps_times_years(exported: Export) -> None:
    rows = exported.rows("times")
    assert rows[1] == {"id": 1, "d": "2026-11-22", "dt": "2026-11-22T14:30:00",
                       "dt6": "2026-11-22T14:30:00.500000", "ts": "2026-11-22T12:30:00Z",
                       "ts3": "2026-11-22T12:30:00.123Z", "tm": "10:00:00", "tm6": "12:00:00.500000",
                       "y": 2026}
    assert rows[2] == {"id": 2, "d": "1000-01-01", "dt": "9999-12-31T23:59:59",
                       "dt6": "1000-01-01T00:00:00.000001", "ts": "1970-01-01T00:00:01Z",
                       "ts3": "2038-01-19T03:14:07.999Z", "tm": "-838:59:59", "tm6": "-00:00:01.500000",
                       "y": 1901}
    assert (rows[3]["tm"], rows[3]["tm6"], rows[3]["y"]) == ("838:59:59", "100:00:00.000000", 2155)
    assert all(v is None for k, v in rows[6].items() if k != "id")


def test_zero_dates_are_written_as_stored(exported: Export) -> None:
    rows = exported.rows("times")
    assert rows[4]["d"] == "0000-00-00"
    assert rows[4]["dt"] == "0000-00-00T00:00:00"
    assert rows[4]["dt6"] == "0000-00-00T00:00:00.000000"
    assert rows[4]["ts"] == "0000-00-00T00:00:00"  # no instant, so no 'Z'
    assert rows[4]["tm"] == "00:00:00" and rows[4]["y"] == 0
    assert rows[5]["d"] == "2026-00-00"


def test_spatial_types_as_wkt(exported: Export) -> None:
    rows = exported.rows("geo")
    assert rows[1] == {"id": 1, "g": "POINT(1 2)", "p": "POINT(1.5 -2)", "ls": "LINESTRING(0 0,1 1,2 0)",
                       "pg": "POLYGON((0 0,1 0,1 1,0 0))"}
    assert rows[2] == {"id": 2, "g": None, "p": None, "ls": None, "pg": None}
    assert exported.column("geo", "p")["type"] == "point"


def test_source_is_identified(exported: Export) -> None:
    source = exported.doc["metadata"]["source"]
    assert source["dialect"] in ("mysql", "mariadb")
    assert source["host"] == "127.0.0.1"
    assert source["server_version"][0].isdigit() and "-" not in source["server_version"]


def test_every_row_is_one_line_of_json(exported: Export) -> None:
    for table, meta in exported.doc["metadata"]["tables"].items():
        lines = data_lines(exported.raw, table)
        assert len(lines) == meta["rows"], table
        assert [load(line) for line in lines] == exported.doc["data"][table]
