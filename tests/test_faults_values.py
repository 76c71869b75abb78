"""Values that once failed a whole export.

A PostgreSQL ``json[]`` element holding ``\\u0000`` (valid JSON, which ``json`` accepts and
``jsonb`` refuses) failed the export, because the elements were read through ``jsonb[]``.
The contract (docs/format.md): json values, in arrays too, are written as stored, tabs and
line breaks turned into spaces; both read paths give the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sqlsnap
from tests.conftest import execute_script


@pytest.mark.parametrize("server_json", [True, False], ids=["server", "portable"])
def test_json_array_element_with_nul_escape_is_exported(pg_url: str, tmp_path: Path,
                                                        server_json: bool) -> None:
    execute_script(pg_url, [
        "CREATE TABLE docs (id int PRIMARY KEY, aj json[], j json)",
        "INSERT INTO docs VALUES (1, ARRAY['{\"a\": \"x\\u0000y\"}'::json, E'[1,\\n 2]', NULL], "
        "'{\"k\": \"\\u0000\"}'), (2, ARRAY[ARRAY['1'::json], ARRAY['\"\\u0000\"'::json]], NULL)",
    ])
    out = tmp_path / "snap.json"
    sqlsnap.export(pg_url, str(out), server_json=server_json)
    raw = out.read_bytes()
    rows = {r["id"]: r for r in json.loads(raw)["data"]["docs"]}
    assert rows[1]["aj"] == [{"a": "x\x00y"}, [1, 2], None]
    assert rows[1]["j"] == {"k": "\x00"}
    assert rows[2]["aj"] == [[1], ["\x00"]]
    assert b'"x\\u0000y"' in raw  # as stored: the escape kept


def test_json_array_paths_give_the_same_bytes(pg_url: str, tmp_path: Path) -> None:
    """Binary COPY (decoded in C), the server's JSON and the portable path: the same bytes,
    elements with whitespace around them, quotes, commas and braces inside them included."""
    execute_script(pg_url, [
        "CREATE TABLE docs (id int PRIMARY KEY, aj json[])",
        "INSERT INTO docs VALUES (1, ARRAY['{\"a\": \"x\\u0000y\", \"a\": 2}'::json, E'[1,\\t2.50]']), "
        "(2, '{}'), (3, NULL), "
        "(4, ARRAY[E' \\n {\"k\": \" ,\\\\\" \"} \\t', '  \"{, }\"  ', ' 7 ']::json[]), "
        "(5, ARRAY[ARRAY[' 1', '2 '], ARRAY[NULL, ' [ 3 , \"}\" ] ']]::json[])",
    ])
    sums = []
    for name, options in [("a", {}), ("b", {"binary_copy": False}), ("c", {"server_json": False})]:
        out = tmp_path / f"{name}.json"
        sqlsnap.export(pg_url, str(out), **options)
        sums.append(json.loads(out.read_bytes())["checksums"])
        rows = {r["id"]: r["aj"] for r in json.loads(out.read_bytes())["data"]["docs"]}
        assert rows[4] == [{"k": " ,\" "}, "{, }", 7], name
        assert rows[5] == [[1, 2], [None, [3, "}"]]], name
    assert sums[0] == sums[1] == sums[2]
