"""SQLite values, written by what they are (docs/format.md, "SQLite"): integers and reals as
numbers, text as strings, blobs as base64, and the marker objects that keep text, blobs and
invalid UTF-8 apart wherever they appear."""

from __future__ import annotations

import base64
import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlsnap
from tests._numbers import Tok, decimals, load


def export_rows(url: str, tmp_path: Path, table: str) -> tuple[bytes, dict[int, dict[str, Any]], Any]:
    out = tmp_path / "out.json"
    sqlsnap.export(url, str(out))
    raw = out.read_bytes()
    doc = load(raw)
    return raw, {row["id"]: row for row in doc["data"][table]}, doc


def run(url: str, statements: list[str], params: dict[str, list[tuple[Any, ...]]] | None = None) -> None:
    conn = sqlite3.connect(url.split("///", 1)[1])
    with conn:
        for s in statements:
            conn.execute(s)
        for stmt, rows in (params or {}).items():
            conn.executemany(stmt, rows)
    conn.close()


def test_integers_and_reals(sqlite_url: str, tmp_path: Path) -> None:
    run(sqlite_url, [
        "CREATE TABLE nums (id INTEGER PRIMARY KEY, i INTEGER, r REAL, n NUMERIC)",
        "INSERT INTO nums VALUES (1, 9223372036854775807, 1e999, 1.0)",
        "INSERT INTO nums VALUES (2, -9223372036854775808, -1e999, 0.0000001)",
        "INSERT INTO nums VALUES (3, 0, 0.1, '12.50')",
        "INSERT INTO nums VALUES (4, NULL, 1e20, 123456789012345678901234567890)",
        "INSERT INTO nums VALUES (5, 42, 1.7976931348623157e308, NULL)",
        "INSERT INTO nums VALUES (6, NULL, NULL, NULL)",
    ])
    raw, rows, doc = export_rows(sqlite_url, tmp_path, "nums")
    assert rows[1]["i"] == 9223372036854775807 and rows[2]["i"] == -9223372036854775808
    assert rows[1]["r"] == "Infinity" and rows[2]["r"] == "-Infinity"
    assert not isinstance(rows[1]["r"], Tok)  # a string, not a number
    assert float(rows[3]["r"]) == 0.1 and float(rows[4]["r"]) == 1e20
    assert float(rows[5]["r"]) == 1.7976931348623157e308
    assert rows[1]["n"] == 1  # NUMERIC affinity stores 1.0 as the integer 1
    assert float(rows[2]["n"]) == 1e-7
    assert float(rows[3]["n"]) == 12.5
    assert float(rows[4]["n"]) == 123456789012345678901234567890.0  # stored as REAL by SQLite
    assert rows[6] == {"id": 6, "i": None, "r": None, "n": None}
    assert b'"i":9223372036854775807,' in raw and b'"r":"Infinity"' in raw
    assert [c["type"] for c in doc["metadata"]["tables"]["nums"]["columns"]] == \
        ["INTEGER", "INTEGER", "REAL", "NUMERIC"]


def test_text_and_blob_columns(sqlite_url: str, tmp_path: Path) -> None:
    control = "".join(chr(i) for i in range(1, 32)) + "\x7f"
    texts = ["single ' double \" backslash \\ end", "line1\nline2\r\n\ttab", control,
             "emoji 😀 日本 \u2028", "", "x" * 100_000]
    run(sqlite_url, ["CREATE TABLE tb (id INTEGER PRIMARY KEY, t TEXT, v VARCHAR(5), b BLOB)"],
        {"INSERT INTO tb VALUES (?, ?, ?, ?)": [
            (1, texts[0], "too long for five", bytes(range(256)) * 4),
            (2, texts[1], None, b""),
            (3, texts[2], "ok", b"\x00"),
            (4, texts[3], None, None),
            (5, texts[4], None, None),
            (6, texts[5], None, None),
        ]})
    raw, rows, doc = export_rows(sqlite_url, tmp_path, "tb")
    for i, text in enumerate(texts, 1):
        assert rows[i]["t"] == text, i
    assert rows[1]["v"] == "too long for five"  # SQLite does not enforce lengths
    assert base64.b64decode(rows[1]["b"], validate=True) == bytes(range(256)) * 4
    assert rows[2]["b"] == "" and rows[3]["b"] == "AA==" and rows[4]["b"] is None
    assert doc["metadata"]["tables"]["tb"]["columns"][3] == {
        "name": "b", "type": "BLOB", "nullable": True, "encoding": "base64"}
    assert "encoding" not in doc["metadata"]["tables"]["tb"]["columns"][1]
    assert raw.count(b'\n{"id":') == len(texts)  # one row a line


def test_storage_classes_that_do_not_match_the_declared_type(sqlite_url: str, tmp_path: Path) -> None:
    run(sqlite_url, [
        "CREATE TABLE odd (id INTEGER PRIMARY KEY, t TEXT, b BLOB, i INTEGER)",
        # A blob in a TEXT column; text in a BLOB column; text in an INTEGER column.
        "INSERT INTO odd VALUES (1, x'0102ff', 'text in a blob column', 'not a number')",
        # Text that is not valid UTF-8 (SQLite does not check), in a TEXT and a BLOB column.
        "INSERT INTO odd VALUES (2, CAST(x'fffe' AS TEXT), CAST(x'c328' AS TEXT), x'00')",
        # Markers must not be confused with text that merely looks like one.
        "INSERT INTO odd VALUES (3, '{\"$base64\": \"AQI=\"}', NULL, 1.5)",
    ])
    _, rows, doc = export_rows(sqlite_url, tmp_path, "odd")
    assert rows[1] == {"id": 1, "t": {"$base64": "AQL/"}, "b": {"$text": "text in a blob column"},
                       "i": "not a number"}
    assert base64.b64decode(rows[1]["t"]["$base64"]) == b"\x01\x02\xff"
    assert rows[2]["t"] == {"$text_base64": "//4="}
    assert base64.b64decode(rows[2]["t"]["$text_base64"]) == b"\xff\xfe"
    assert rows[2]["b"] == {"$text_base64": "wyg="}
    assert rows[2]["i"] == {"$base64": "AA=="}
    assert rows[3]["t"] == '{"$base64": "AQI="}'  # a string, not a marker object
    assert rows[3]["i"] == "1.5"


def test_json_declared_column(sqlite_url: str, tmp_path: Path) -> None:
    valid = {
        1: '{"b": [1, 2.50, {"c": null}], "a": "x\\ny", "small": 0.0000001, "big": 1e400}',
        2: "[1, 2, 3]",
        3: "42",
        4: "true",
    }
    run(sqlite_url, ["CREATE TABLE docs (id INTEGER PRIMARY KEY, j JSON)"],
        {"INSERT INTO docs VALUES (?, ?)": [*valid.items(), (5, "not json {"), (6, None),
                                            (7, b"\x01"), (8, "")]})
    raw, rows, _ = export_rows(sqlite_url, tmp_path, "docs")
    for i, text in valid.items():
        assert decimals(rows[i]["j"]) == json.loads(text, parse_float=Decimal), i
    assert rows[1]["j"]["b"] == [1, "2.50", {"c": None}] and rows[1]["j"]["a"] == "x\ny"
    assert isinstance(rows[1]["j"]["b"][1], Tok)
    assert rows[1]["j"]["small"] == "0.0000001" and rows[1]["j"]["big"] == "1e400"
    assert rows[2]["j"] == [1, 2, 3] and rows[3]["j"] == 42 and rows[4]["j"] is True
    assert rows[5]["j"] == "not json {"  # invalid JSON stays the text it is
    assert rows[6]["j"] is None
    assert rows[7]["j"] == {"$base64": "AQ=="}
    assert rows[8]["j"] == ""
    # Compact, on one line.
    assert b'"j":{"b":[1,2.50,{"c":null}],"a":"x\\ny","small":0.0000001,"big":1e400}}' in raw


def test_json_column_keeps_text_and_json_strings_apart(sqlite_url: str, tmp_path: Path) -> None:
    markers = ['{"$base64": "AQ=="}', '{"$text": "x"}', '{"$text_base64": "/w=="}', '{"$json": 1}']
    run(sqlite_url, ["CREATE TABLE docs (id INTEGER PRIMARY KEY, j JSON)"],
        {"INSERT INTO docs VALUES (?, ?)": [(1, "not json"), (2, '"not json"'), (3, b"\x01"),
                                            *enumerate(markers, 4), (8, '{"$json": 1, "k": 2}')]})
    raw, rows, _ = export_rows(sqlite_url, tmp_path, "docs")
    assert rows[1]["j"] != rows[2]["j"]
    # Text that is not JSON is the string; a JSON string, and JSON that looks like a marker
    # object, are wrapped in {"$json": ...} (docs/format.md, "SQLite").
    assert rows[1]["j"] == "not json"
    assert rows[2]["j"] == {"$json": "not json"}
    assert rows[3]["j"] == {"$base64": "AQ=="}
    assert [rows[i]["j"] for i in range(4, 8)] == [{"$json": json.loads(m)} for m in markers]
    assert rows[8]["j"] == {"$json": 1, "k": 2}  # two keys: not a marker
    assert b'{"id":2,"j":{"$json":"not json"}}' in raw


def test_infinities_and_text_spelled_like_them_stay_apart(sqlite_url: str, tmp_path: Path) -> None:
    """A REAL column writes its infinities as the float contract does; text spelled the same
    there is marked. Elsewhere text stays text, and an infinity is marked."""
    run(sqlite_url, ["CREATE TABLE f (id INTEGER PRIMARY KEY, r DOUBLE PRECISION, n NUMERIC, t TEXT)"],
        {"INSERT INTO f VALUES (?, ?, ?, ?)": [
            (1, float("inf"), "Infinity", "Infinity"), (2, "Infinity", float("-inf"), "NaN"),
            (3, "NaN", "NaN", float("inf")), (4, 1.5, 1.5, "1.5"),
        ]})
    _, rows, _ = export_rows(sqlite_url, tmp_path, "f")
    assert [rows[i]["r"] for i in (1, 2, 3)] == ["Infinity", {"$text": "Infinity"}, {"$text": "NaN"}]
    assert [rows[i]["n"] for i in (1, 2, 3)] == ["Infinity", {"$real": "-Infinity"}, "NaN"]
    # TEXT affinity stores the float as the text SQLite prints for it.
    assert [rows[i]["t"] for i in (1, 2, 3)] == ["Infinity", "NaN", "Inf"]
    assert float(rows[4]["r"]) == 1.5 and float(rows[4]["n"]) == 1.5 and rows[4]["t"] == "1.5"


def test_mixed_storage_classes_in_one_column(sqlite_url: str, tmp_path: Path) -> None:
    run(sqlite_url, ["CREATE TABLE mixed (id INTEGER PRIMARY KEY, m)"],
        {"INSERT INTO mixed VALUES (?, ?)": [
            (1, 1), (2, 1.5), (3, "text"), (4, b"\xab"), (5, None), (6, float("inf")), (7, 2**63 - 1),
            (8, "12"), (9, -0.0),
        ]})
    _, rows, doc = export_rows(sqlite_url, tmp_path, "mixed")
    assert [rows[i]["m"] for i in range(1, 10)] == \
        [1, "1.5", "text", {"$base64": "qw=="}, None, {"$real": "Infinity"}, 2**63 - 1, "12", "-0.0"]
    assert isinstance(rows[2]["m"], Tok) and not isinstance(rows[8]["m"], Tok)
    assert doc["metadata"]["tables"]["mixed"]["columns"][1] == {"name": "m", "type": "", "nullable": True}


def test_nullability_and_source_metadata(sqlite_url: str, tmp_path: Path) -> None:
    run(sqlite_url, ["CREATE TABLE n (id INTEGER PRIMARY KEY, a TEXT NOT NULL, b TEXT)",
                     "INSERT INTO n VALUES (1, 'x', NULL)"])
    _, _, doc = export_rows(sqlite_url, tmp_path, "n")
    cols = doc["metadata"]["tables"]["n"]["columns"]
    assert [(c["name"], c["nullable"]) for c in cols] == [("id", False), ("a", False), ("b", True)]
    assert doc["metadata"]["source"]["dialect"] == "sqlite"
    assert doc["metadata"]["source"]["database"] == "source.db"
    assert doc["metadata"]["source"]["server_version"] == sqlite3.sqlite_version
