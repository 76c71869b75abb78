"""``sqlsnap verify``: each kind of damage is made to a real export and must be caught, with
the table and line where it is; intact files pass in every layout and compression."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sqlsnap.cli import main
from sqlsnap.errors import VerifyError
from sqlsnap.snapshot.verify import verify

USERS = 3000


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def make_db(path: Path, *, orphans: bool = False, users: int = USERS, payload: int = 0) -> str:
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE companies (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
        CREATE TABLE users (id INTEGER PRIMARY KEY, company_id INTEGER REFERENCES companies(id),
                            manager_id INTEGER REFERENCES users(id), email TEXT, bio TEXT);
        CREATE TABLE tickets (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
                              company_id INTEGER REFERENCES companies(id), title TEXT);
    """)
    conn.executemany("INSERT INTO companies VALUES (?, ?)", [(i, f"company {i}") for i in range(1, 11)])
    # manager_id points forward (to a later row of the same table) for even ids: verify must
    # look those up after the whole table was read.
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                     [(i, 1 + i % 10, (i + 1 if i % 2 == 0 and i < users else None),
                       f"user{i}@example.com", "x" * payload) for i in range(1, users + 1)])
    conn.executemany("INSERT INTO tickets VALUES (?, ?, ?, ?)",
                     [(i, 1 + i % users, None if i % 7 == 0 else 1 + i % 10, f"ticket \"{i}\"\n")
                      for i in range(1, 501)])
    if orphans:
        conn.execute("INSERT INTO tickets VALUES (9001, 999999, 1, 'user gone')")
        conn.execute("INSERT INTO tickets VALUES (9002, 1, 77, 'company gone')")
        conn.execute(f"INSERT INTO users VALUES ({users + 1}, 1, 424242, 'x@example.com', '')")
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return make_db(tmp_path / "app.db")


def export(db: str, path: Path, *args: str) -> Path:
    code, out, err = run("export", db, "-o", str(path), "-q", *args)
    assert code == 0, err
    return path


def fail(path: Path, *args: str) -> str:
    code, out, err = run("verify", str(path), *args)
    assert code == 7, (code, out, err)
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def line_of(path: Path, needle: bytes) -> int:
    return path.read_bytes().split(b"\n").index(needle) + 1


@pytest.mark.parametrize("suffix", [".json", ".json.zst", ".json.gz"])
def test_intact_snapshots_pass(db: str, tmp_path: Path, suffix: str) -> None:
    path = export(db, tmp_path / f"app{suffix}")
    code, out, err = run("verify", str(path))
    assert code == 0, err
    assert out == (f"OK {path}: 3 tables, {USERS + 510:,} rows, matching their counts and checksums; "
                   f"sha256 matches {path}.sha256\n")
    code, out, err = run("verify", str(path), "--json", "--integrity")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["ok"] and summary["rows_per_table"] == {"companies": 10, "users": USERS, "tickets": 500}
    assert summary["compression"] == {".json": "none", ".json.zst": "zstd", ".json.gz": "gzip"}[suffix]
    assert summary["integrity_checked"] and summary["dangling_total"] == 0


def test_stdout_export_without_checksum_file(db: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", db, "-o", "-", "-q"])
    (tmp_path / "piped.json").write_bytes(result.stdout_bytes)
    code, out, err = run("verify", str(tmp_path / "piped.json"))
    assert code == 0 and "no .sha256 file beside it" in out


def test_truncated_files(db: str, tmp_path: Path) -> None:
    path = export(db, tmp_path / "app.json")
    data = path.read_bytes()
    # Cut in the middle of a row.
    row = data.index(b'"email":"user1500@example.com"')
    path.write_bytes(data[:row])
    message = fail(path)
    cut_line = data[:row].count(b"\n") + 1
    assert f"is truncated: line {cut_line} is cut short" in message
    assert "also differs from app.json.sha256" in message
    # Cut just after a complete row: the document never closes.
    end = data.index(b"\n", row) + 1
    path.write_bytes(data[:end])
    assert re.search(r"is truncated: it ends at line \d+ inside table 'users'", fail(path))
    # Only the last newline missing.
    path.write_bytes(data[:-1])
    assert "is truncated" in fail(path)
    # Compressed, cut in half.
    for suffix in (".json.zst", ".json.gz"):
        packed = export(db, tmp_path / f"app{suffix}")
        packed.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
        message = fail(packed)
        assert "truncated" in message or "damaged" in message, message


def table_sha256s(raw: bytes, tables: dict[str, Any]) -> dict[str, str]:
    """Each table's SHA-256 of its rows as JSON lines, as sqlsnap computed them before
    XXH3-128, from a document's row lines."""
    lines = raw.split(b"\n")
    sums = {}
    for name, entry in tables.items():
        rows = []
        if entry["rows"]:
            start = lines.index(json.dumps(name).encode() + b": [") + 1
            rows = [line.rstrip(b",") for line in lines[start:start + entry["rows"]]]
        sums[name] = hashlib.sha256(b"".join(r + b"\n" for r in rows)).hexdigest()
    return sums


def legacy_copy(path: Path, out: Path) -> Path:
    """The same snapshot as sqlsnap wrote it before the closing checksums member: each
    table's SHA-256 in its metadata, and the data ended by '}}'."""
    import msgspec

    raw = path.read_bytes()
    meta = json.loads(raw)["metadata"]
    for name, digest in table_sha256s(raw, meta["tables"]).items():
        meta["tables"][name]["sha256"] = digest
    del meta["checksums"]
    data = raw[raw.index(b'\n"data": {'):raw.rindex(b'\n},\n"checksums": ')]
    out.write_bytes(b'{"metadata": ' + msgspec.json.format(msgspec.json.encode(meta), indent=2) + b","
                    + data + b"\n}}\n")
    return out


def test_snapshots_written_before_the_checksums_member_still_verify(db: str, tmp_path: Path) -> None:
    old = legacy_copy(export(db, tmp_path / "new.json"), tmp_path / "old.json")
    assert json.loads(old.read_bytes())["data"]["companies"]  # still one valid document
    code, out, err = run("verify", str(old), "--integrity")
    assert code == 0, err
    data = old.read_bytes()
    pos = data.index(b"user2222@example.com")
    old.write_bytes(data[:pos] + b"X" + data[pos + 1:])
    assert "the rows do not match their SHA-256 in the metadata" in fail(old)


def sha256_copy(path: Path, out: Path) -> Path:
    """The same snapshot as sqlsnap wrote it before XXH3-128: SHA-256s per table, named so in
    the metadata and in the closing checksums member."""
    raw = path.read_bytes()
    sums = table_sha256s(raw, json.loads(raw)["metadata"]["tables"])
    head, _ = raw.split(b'\n"checksums": ')
    assert head.count(b'"algorithm": "xxh128"') == 1
    out.write_bytes(head.replace(b'"algorithm": "xxh128"', b'"algorithm": "sha256"')
                    + b'\n"checksums": ' + json.dumps({"sha256": sums}).encode() + b"\n}\n")
    return out


def test_snapshots_with_sha256_table_checksums_still_verify(db: str, tmp_path: Path) -> None:
    old = sha256_copy(export(db, tmp_path / "new.json"), tmp_path / "old.json")
    code, out, err = run("verify", str(old))
    assert code == 0, err
    data = old.read_bytes()
    pos = data.index(b"user2222@example.com")
    old.write_bytes(data[:pos] + b"X" + data[pos + 1:])
    message = fail(old)
    assert "table 'users'" in message and "the rows do not match their SHA-256 in the checksums" in message


def test_an_unknown_checksum_algorithm_asks_for_a_newer_sqlsnap(db: str, tmp_path: Path) -> None:
    path = export(db, tmp_path / "app.json")
    path.write_bytes(path.read_bytes().replace(b'"algorithm": "xxh128"', b'"algorithm": "blake9"', 1))
    message = fail(path)
    assert "the checksum algorithm 'blake9' is not one this sqlsnap reads (xxh128, sha256); upgrade sqlsnap" \
        in message, message


def test_flipped_byte_inside_a_value_breaks_the_table_checksum(db: str, tmp_path: Path) -> None:
    path = export(db, tmp_path / "app.json")
    data = path.read_bytes()
    pos = data.index(b"user2222@example.com")
    path.write_bytes(data[:pos] + b"X" + data[pos + 1:])  # still valid JSON
    first = line_of(path, b'"users": [')
    lines = path.read_bytes().split(b"\n")
    sums = next(i for i, line in enumerate(lines, 1) if line.startswith(b'"checksums": '))
    message = fail(path)
    assert (f"table 'users' (lines {first}-{first + USERS}): the rows do not match their XXH3-128 in the "
            f"checksums (line {sums}) (the data was changed)") in message
    assert "also differs from app.json.sha256" in message


def test_flipped_byte_that_breaks_json_is_located(db: str, tmp_path: Path) -> None:
    path = export(db, tmp_path / "app.json")
    data = bytearray(path.read_bytes())
    pos = data.index(b'{"id":17,"company_id"')
    data[pos + 1] ^= 0x20  # '"' becomes 0x02
    path.write_bytes(bytes(data))
    line = bytes(data[:pos]).count(b"\n") + 1
    message = fail(path)
    assert f"line {line} (table 'users', row 17): not valid JSON" in message


def test_flipped_byte_in_compressed_data(db: str, tmp_path: Path) -> None:
    path = export(db, tmp_path / "app.json.zst")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    message = fail(path)
    assert str(path) in message


def test_removed_row(db: str, tmp_path: Path) -> None:
    path = export(db, tmp_path / "app.json")
    lines = path.read_bytes().split(b"\n")
    victim = next(i for i, line in enumerate(lines) if line.startswith(b'{"id":42,"company_id"'))
    del lines[victim]
    path.write_bytes(b"\n".join(lines))
    json.loads(path.read_bytes())  # still a valid JSON document
    first = line_of(path, b'"users": [')
    message = fail(path)
    assert (f"table 'users' (lines {first}-{first + USERS - 1}): {USERS - 1:,} rows, but the metadata says "
            f"{USERS}") in message


def test_wrong_counts_in_the_metadata(db: str, tmp_path: Path) -> None:
    path = export(db, tmp_path / "app.json")
    data = path.read_bytes()
    assert data.count(b'"rows": 500,') == 1
    path.write_bytes(data.replace(b'"rows": 500,', b'"rows": 501,'))
    assert "table 'tickets'" in fail(path) and "500 rows, but the metadata says 501" in fail(path)
    path.write_bytes(data.replace(b'"total_rows": 3510', b'"total_rows": 3511'))
    assert "the metadata says total_rows 3511, the tables hold 3,510" in fail(path)


def test_structure_problems(db: str, tmp_path: Path) -> None:
    path = export(db, tmp_path / "app.json")
    data = path.read_bytes()
    path.write_bytes(data.replace(b'\n"tickets": [', b'\n"tickets_old": ['))
    assert "table 'tickets_old' is not in the metadata" in fail(path)
    path.write_bytes(data + b"{}\n")
    assert "unexpected content after the end of the document" in fail(path)
    path.write_bytes(data.replace(b'\n"data": {', b'\n"rows": {'))
    assert "is truncated: it ends inside the metadata" in fail(path)
    path.write_bytes(b'{"hello": "world"}\n')
    assert "is not a sqlsnap snapshot" in fail(path)


def test_checksum_file_mismatch(db: str, tmp_path: Path) -> None:
    path = export(db, tmp_path / "app.json")
    sidecar = tmp_path / "app.json.sha256"
    sidecar.write_text("0" * 64 + "  app.json\n")
    assert "differs from the one in app.json.sha256" in fail(path)
    sidecar.write_text("not a checksum\n")
    assert "is not a checksum file" in fail(path)


def test_missing_file(tmp_path: Path) -> None:
    code, out, err = run("verify", str(tmp_path / "nope.json"))
    assert code == 4 and "does not exist" in err


def test_jsonl_folders_with_sha256_table_checksums_still_verify(db: str, tmp_path: Path) -> None:
    """A manifest written before XXH3-128: "algorithm": "sha256" and tables[name].sha256."""
    folder = tmp_path / "app-jsonl"
    export(db, folder, "--format", "jsonl")
    manifest = folder / "metadata.json"
    meta = json.loads(manifest.read_bytes())
    meta["checksums"]["algorithm"] = "sha256"
    for entry in meta["tables"].values():
        del entry["xxh128"]
        entry["sha256"] = hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest()
    manifest.write_text(json.dumps(meta, indent=2))
    code, out, err = run("verify", str(folder))
    assert code == 0, err
    users = folder / "users.jsonl"
    users.write_bytes(users.read_bytes().replace(b"user2222@example.com", b"userX222@example.com"))
    message = fail(folder)
    assert "users.jsonl table 'users'" in message and "do not match their SHA-256 in the metadata" in message


def test_jsonl_folder(db: str, tmp_path: Path) -> None:
    folder = tmp_path / "app-jsonl"
    for compress in ("none", "gzip"):
        target = folder.with_name(f"app-{compress}")
        export(db, target, "--format", "jsonl", "--compress", compress)
        code, out, err = run("verify", str(target), "--integrity")
        assert code == 0, err
        assert out.startswith(f"OK {target}: 3 tables, {USERS + 510:,} rows")
    plain = folder.with_name("app-none")
    users = plain / "users.jsonl"
    lines = users.read_bytes().split(b"\n")
    del lines[10]
    users.write_bytes(b"\n".join(lines))
    assert f"users.jsonl table 'users' (lines 1-{USERS - 1}): {USERS - 1:,} rows" in fail(plain)
    gz = folder.with_name("app-gzip") / "tickets.jsonl.gz"
    gz.write_bytes(gzip.compress(gzip.decompress(gz.read_bytes()).replace(b"ticket", b"tickex", 1)))
    assert "table 'tickets'" in fail(folder.with_name("app-gzip")) and "XXH3-128" in fail(
        folder.with_name("app-gzip"))


def test_integrity_lists_every_dangling_foreign_key(tmp_path: Path) -> None:
    db = make_db(tmp_path / "orphans.db", orphans=True)
    for suffix, args in ((".json.zst", []), ("-jsonl", ["--format", "jsonl"])):
        path = export(db, tmp_path / f"app{suffix}", *args)
        code, out, err = run("verify", str(path))
        assert code == 0, err  # without --integrity, the file itself is fine
        code, out, err = run("verify", str(path), "--integrity")
        assert code == 7
        assert "Error: " in err and "3 foreign key values have no parent row in the snapshot" in err
        dangling = out.splitlines()
        assert len(dangling) == 3, out
        assert re.fullmatch(r"dangling: users line \d+: manager_id=424242 has no row in users\(id\)",
                            dangling[0])
        assert re.fullmatch(r"dangling: tickets line \d+: user_id=999999 has no row in users\(id\)",
                            dangling[1])
        assert re.fullmatch(r"dangling: tickets line \d+: company_id=77 has no row in companies\(id\)",
                            dangling[2])
    result = verify(str(tmp_path / "app.json.zst"), integrity=True)
    assert not result.ok and result.dangling_total == 3
    assert {d.ref_table for d in result.dangling} == {"users", "companies"}


def test_excluded_parent_table_is_reported(db: str, tmp_path: Path) -> None:
    path = export(db, tmp_path / "app.json", "--exclude-tables", "companies")
    result = verify(str(path), integrity=True)
    assert result.dangling_total == USERS + 500 - 500 // 7
    assert result.dangling[0].reason == "that table is not in the snapshot"
    assert len(result.dangling) == 1000  # listed up to MAX_LISTED, all counted


def test_library_error_carries_table_and_line(db: str, tmp_path: Path) -> None:
    path = export(db, tmp_path / "app.json")
    lines = path.read_bytes().split(b"\n")
    victim = next(i for i, line in enumerate(lines) if line.startswith(b'{"id":99,"company_id"'))
    lines[victim] = lines[victim].replace(b'"id":99', b'"id":99,')
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(VerifyError) as info:
        verify(str(path))
    assert info.value.fields["table"] == "users" and info.value.fields["line"] == victim + 1
    assert info.value.exit_code == 7


def test_memory_stays_flat_on_a_large_file(tmp_path: Path) -> None:
    db = make_db(tmp_path / "big.db", users=20_000, payload=900)  # about 20 MB of JSON
    path = export(db, tmp_path / "big.json.zst")
    tracemalloc.start()
    try:
        result = verify(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.tables["users"] == 20_000
    # A few 1 MiB blocks in flight, whatever the file's size.
    assert peak < 8 << 20, f"verify peaked at {peak / 1e6:.1f} MB"
