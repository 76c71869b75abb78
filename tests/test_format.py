"""The format contract (docs/format.md): metadata valid against the published JSON Schema,
one row per line, checksums that match the rows."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import xxhash

import sqlsnap
from tests.conftest import execute_script

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "metadata.schema.json").read_text())

STATEMENTS = [
    "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id), note TEXT)",
    "CREATE TABLE empty_one (id INTEGER PRIMARY KEY)",
    "INSERT INTO parent VALUES (1, 'a'), (2, 'line\nbreak')",
    "INSERT INTO child VALUES (10, 1, 'x'), (11, 2, NULL), (12, 2, 'y')",
]


@pytest.fixture
def exported(any_url: str, tmp_path: Path) -> tuple[str, Path]:
    execute_script(any_url, STATEMENTS)
    out = tmp_path / "out.json"
    sqlsnap.export(any_url, str(out), environment="test")
    return any_url, out


def test_metadata_validates_against_the_published_schema(exported: tuple[str, Path]) -> None:
    _, out = exported
    doc = json.loads(out.read_bytes())
    jsonschema.validate(doc["metadata"], SCHEMA)
    assert list(doc) == ["metadata", "data", "checksums"]
    assert list(doc["checksums"]["xxh128"]) == list(doc["data"]) == list(doc["metadata"]["tables"])
    assert doc["metadata"]["checksums"] == {"algorithm": "xxh128", "location": "end"}
    assert doc["metadata"]["total_rows"] == 5


def test_one_row_per_line_and_checksums_match(exported: tuple[str, Path]) -> None:
    _, out = exported
    raw = out.read_bytes()
    doc = json.loads(raw)
    lines = raw.decode().split("\n")
    for table, meta in doc["metadata"]["tables"].items():
        start = next(i for i, line in enumerate(lines) if line.startswith(json.dumps(table) + ": ["))
        rows = lines[start + 1: start + 1 + meta["rows"]] if meta["rows"] else []
        row_lines = [r[:-1] if r.endswith(",") else r for r in rows]
        assert [json.loads(r) for r in row_lines] == doc["data"][table]
        digest = xxhash.xxh3_128("".join(r + "\n" for r in row_lines).encode()).hexdigest()
        assert digest == doc["checksums"]["xxh128"][table], table
        assert "xxh128" not in meta  # the document's rows come after its metadata: see "checksums"
    # Parents before children.
    assert list(doc["data"]).index("parent") < list(doc["data"]).index("child")


def test_jsonl_layout_matches_the_document(exported: tuple[str, Path], tmp_path: Path) -> None:
    url, out = exported
    folder = tmp_path / "folder"
    sqlsnap.export(url, str(folder), format="jsonl")
    meta = json.loads((folder / "metadata.json").read_bytes())
    jsonschema.validate(meta, SCHEMA)
    doc = json.loads(out.read_bytes())
    for table, entry in meta["tables"].items():
        data = (folder / entry["file"]).read_bytes()
        assert xxhash.xxh3_128(data).hexdigest() == entry["xxh128"]
        # The checksum is the one xxhash's own tool prints for the file (CI requires the tool:
        # tests/conftest.py).
        if shutil.which("xxh128sum"):
            printed = subprocess.run(["xxh128sum", entry["file"]], cwd=folder, capture_output=True,
                                     text=True, check=True).stdout
            assert printed == f"{entry['xxh128']}  {entry['file']}\n"
        assert [json.loads(line) for line in data.splitlines()] == doc["data"][table]
