"""``open_snapshot``: real exports in every layout, codec and place read back table by table:
the metadata the export wrote, the rows the source holds (every digit kept), the parser's
events; truncated and damaged files raise VerifyError at their line and never end a table
short; memory stays flat on a large table; closing early leaves no thread or open file."""

from __future__ import annotations

import base64
import gc
import os
import shutil
import sqlite3
import subprocess
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import sqlsnap
from sqlsnap.errors import NotFoundError, UsageError, VerifyError
from sqlsnap.snapshot import Snapshot, open_snapshot
from sqlsnap.snapshot.reader import DocumentParser, Kind, Lines, TableSpan

from .conftest import execute_script, mysql_connect, pg_connect

USERS = 300
AGE_KEYGEN = shutil.which("age-keygen")


# -- the source and what it holds ------------------------------------------------------------

def make_db(path: Path, *, users: int = USERS, payload: int = 0) -> str:
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE companies (id INTEGER PRIMARY KEY, name TEXT NOT NULL, revenue REAL);
        CREATE TABLE users (id INTEGER PRIMARY KEY, company_id INTEGER REFERENCES companies(id),
                            email TEXT, bio TEXT, avatar BLOB, score REAL, big INTEGER);
        CREATE TABLE audit (id INTEGER PRIMARY KEY, note TEXT);
    """)
    conn.executemany("INSERT INTO companies VALUES (?, ?, ?)",
                     [(1, "Acme", 1234567.891), (2, "Globex ☃", None), (3, 'quote " and \\', 1e20)])
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(i, 1 + i % 3, f"user{i}@example.com", f"line one\nline {i}\t" + "x" * payload,
                       bytes([i % 256, 0, 255]), i / 7, 2**62 + i) for i in range(1, users + 1)])
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def source_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Each table's rows as the snapshot writes them (docs/format.md): REAL as the shortest
    repr (read back as Decimal), a BLOB column as base64."""
    conn = sqlite3.connect(url.split("///", 1)[1])
    out: dict[str, list[dict[str, Any]]] = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        cur = conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid')
        names = [d[0] for d in cur.description]
        out[table] = [{n: _as_written(v) for n, v in zip(names, row)} for row in cur]
    conn.close()
    return out


def _as_written(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


@pytest.fixture
def db(tmp_path: Path) -> str:
    return make_db(tmp_path / "app.db")


def keypair(folder: Path) -> tuple[Path, str]:
    if not AGE_KEYGEN:
        pytest.skip("age-keygen is not installed (apt-get install age)")
    key = folder / "key.txt"
    subprocess.run([AGE_KEYGEN, "-o", str(key)], check=True, capture_output=True)
    public = subprocess.run([AGE_KEYGEN, "-y", str(key)], check=True, capture_output=True, text=True)
    return key, public.stdout.strip()


def read_all(snap: Snapshot, *, raw: bool = False) -> dict[str, list[Any]]:
    return {name: list(rows) for name, rows in snap.tables(raw=raw)}


# -- every layout and codec ------------------------------------------------------------------

LAYOUTS = {
    "json": ("app.json", {}, "none"),
    "json.zst": ("app.json.zst", {}, "zstd"),
    "json.gz": ("app.json.gz", {}, "gzip"),
    "json.zst.age": ("app.json.zst.age", {"age": True}, "zstd"),
    "jsonl": ("app-jsonl", {"format": "jsonl"}, "none"),
    "jsonl.zst": ("app-jsonl-zst", {"format": "jsonl", "compress": "zstd"}, "zstd"),
    "jsonl.gz": ("app-jsonl-gz", {"format": "jsonl", "compress": "gzip"}, "gzip"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_reads_back_the_metadata_and_the_rows(db: str, tmp_path: Path, layout: str) -> None:
    name, options, compression = LAYOUTS[layout]
    options = dict(options)
    identities: list[Path] = []
    if options.pop("age", False):
        key, public = keypair(tmp_path)
        options["encrypt_to"] = [public]
        identities = [key]
    result = sqlsnap.export(db, str(tmp_path / name), **options)
    with open_snapshot(str(tmp_path / name), identities=identities) as snap:
        assert snap.layout == ("jsonl" if layout.startswith("jsonl") else "json")
        # The document's metadata has its counts and says its checksums are at the end; the
        # manifest's carries each table's checksum: both are exactly what the export wrote.
        assert snap.metadata == result.metadata
        assert snap.encrypted == bool(identities)
        tables = read_all(snap)
        assert snap.compression == compression
    assert list(tables) == list(result.metadata["tables"])  # file order: parents first
    assert tables == source_rows(db)
    assert tables["users"][0]["big"] == 2**62 + 1 and isinstance(tables["users"][0]["score"], Decimal)
    assert tables["companies"][2]["revenue"] == Decimal("1e+20")


def test_raw_rows_are_the_lines_of_the_jsonl_files(db: str, tmp_path: Path) -> None:
    sqlsnap.export(db, str(tmp_path / "app.json"))
    sqlsnap.export(db, str(tmp_path / "folder"), format="jsonl")
    for location in (tmp_path / "app.json", tmp_path / "folder"):
        with open_snapshot(str(location)) as snap:
            tables = read_all(snap, raw=True)
        for table, rows in tables.items():
            file = tmp_path / "folder" / f"{table}.jsonl"
            assert b"".join(row + b"\n" for row in rows) == file.read_bytes()


def test_exact_digits_from_postgresql_and_mariadb(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    values = [Decimal("12345678901234567890.12345678901234567890"), Decimal("-0.00000000000000000001"),
              Decimal("1.50000000000000000000"), Decimal("0E-20")]
    for fixture in ("pg_url", "mysql_url"):
        url = request.getfixturevalue(fixture)
        execute_script(url, [
            "CREATE TABLE amounts (id INT PRIMARY KEY, amount NUMERIC(40, 20), n BIGINT, f DOUBLE PRECISION)",
            *(f"INSERT INTO amounts VALUES ({i}, {v}, {9223372036854775807 - i}, {i}.1)"
              for i, v in enumerate(values)),
        ])
        path = tmp_path / f"{fixture}.json.zst"
        sqlsnap.export(url, str(path))
        with open_snapshot(str(path)) as snap:
            rows = read_all(snap)["amounts"]
        if fixture == "pg_url":
            with pg_connect(url) as conn:
                stored = conn.execute("SELECT id, amount, n, f FROM amounts ORDER BY id").fetchall()
        else:
            conn = mysql_connect(url)
            with conn.cursor() as cur:
                cur.execute("SELECT id, amount, n, f FROM amounts ORDER BY id")
                stored = cur.fetchall()
            conn.close()
        got = sorted(rows, key=lambda r: r["id"])
        for row, (id_, amount, n, f) in zip(got, stored, strict=True):
            assert row["id"] == id_ and row["n"] == n and float(row["f"]) == f
            # The same digits, trailing zeros included: not a float that happens to compare equal.
            assert isinstance(row["amount"], Decimal) and str(row["amount"]) == str(amount), (fixture, row)


# -- places: S3, memory, standard input ------------------------------------------------------

@pytest.fixture(scope="module")
def s3_server() -> Iterator[Any]:
    pytest.importorskip("boto3")
    pytest.importorskip("moto")
    from ._s3server import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    from ._s3server import aws_env

    aws_env(monkeypatch)
    name = f"sqlsnap-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


def test_s3_object_and_prefix(db: str, tmp_path: Path, s3_server: Any, bucket: str) -> None:
    url = f"s3://{bucket}/dumps/app.json.gz"
    result = sqlsnap.export(db, url, s3_endpoint=s3_server.endpoint)
    with open_snapshot(url, s3_endpoint=s3_server.endpoint) as snap:
        assert snap.metadata == result.metadata and snap.compression == "gzip"
        assert read_all(snap) == source_rows(db)
    # A JSON Lines snapshot copied under a prefix (the exporter writes folders locally).
    folder = tmp_path / "app-jsonl"
    result = sqlsnap.export(db, str(folder), format="jsonl", compress="zstd")
    client = s3_server.client()
    for file in folder.iterdir():
        client.put_object(Bucket=bucket, Key=f"lines/app/{file.name}", Body=file.read_bytes())
    for location in (f"s3://{bucket}/lines/app", f"s3://{bucket}/lines/app/"):
        with open_snapshot(location, s3_endpoint=s3_server.endpoint) as snap:
            assert snap.layout == "jsonl" and snap.metadata == result.metadata
            assert read_all(snap) == source_rows(db)
    with pytest.raises(NotFoundError):
        open_snapshot(f"s3://{bucket}/nothing.json", s3_endpoint=s3_server.endpoint)


def test_memory_store_and_stdin(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlsnap.stores.memory import named

    path = tmp_path / "app.json.zst"
    sqlsnap.export(db, str(path))
    store = named(f"reader-{uuid.uuid4().hex[:8]}")
    store.put("snaps/app.json.zst", path.read_bytes())
    with open_snapshot(f"memory://{store.name}/snaps/app.json.zst") as snap:
        assert read_all(snap) == source_rows(db)

    class Stdin:
        buffer = open(path, "rb")  # noqa: SIM115 - closed below

    monkeypatch.setattr("sys.stdin", Stdin)
    try:
        with open_snapshot("-") as snap:
            assert snap.compression == "zstd" and read_all(snap) == source_rows(db)
    finally:
        Stdin.buffer.close()


def test_what_is_not_a_snapshot(tmp_path: Path, db: str) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        open_snapshot(str(tmp_path / "missing.json"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VerifyError, match="has no metadata.json; not a sqlsnap JSON Lines folder"):
        open_snapshot(str(tmp_path / "empty"))
    (tmp_path / "hello.json").write_bytes(b'{"hello": "world"}\n')
    with pytest.raises(VerifyError, match="is not a sqlsnap snapshot"):
        open_snapshot(str(tmp_path / "hello.json"))
    key, public = keypair(tmp_path)
    sqlsnap.export(db, str(tmp_path / "secret.json.age"), encrypt_to=[public])
    with pytest.raises(UsageError, match="is encrypted"):
        open_snapshot(str(tmp_path / "secret.json.age"))


# -- the parser's events ---------------------------------------------------------------------

def test_parser_events(db: str, tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    sqlsnap.export(db, str(path))
    lines = path.read_bytes().split(b"\n")
    with open(path, "rb") as fh:
        parser = DocumentParser(Lines(fh), str(path))
        events = list(parser)
    kinds = [kind for kind, _, _ in events]
    assert kinds[0] is Kind.METADATA and kinds[-2:] == [Kind.CHECKSUMS, Kind.END]
    assert parser.algorithm == "xxh128" and list(parser.tables) == ["audit", "companies", "users"]
    assert [v for k, v, _ in events if k is Kind.TABLE] == ["audit", "companies", "users"]
    spans = [v for k, v, _ in events if k is Kind.TABLE_END]
    audit = lines.index(b'"audit": [],') + 1
    users = lines.index(b'"users": [') + 1
    assert spans[0] == TableSpan("audit", 0, audit, audit)
    assert spans[2] == TableSpan("users", USERS, users, users + USERS)
    rows = [(v, line) for k, v, line in events if k is Kind.ROW]
    # Each row's bytes are its line without the separating comma, with the line's number.
    assert all(lines[line - 1].rstrip(b",") == v and not v.endswith(b",") for v, line in rows)
    assert set(events[-2][1]) == {"audit", "companies", "users"}
    assert events[-1] == (Kind.END, None, len(lines) - 1)  # the file ends with a newline


# -- damage ----------------------------------------------------------------------------------

def test_truncated_document_never_ends_a_table_short(db: str, tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    sqlsnap.export(db, str(path))
    data = path.read_bytes()
    cut = data.index(b'"email":"user150@example.com"')
    for size, whole, message in (
            (cut, 149, "is truncated: line {line} is cut short"),
            (data.index(b"\n", cut) + 1, 150, "is truncated: it ends at line {line} inside table 'users'")):
        path.write_bytes(data[:size])
        line = data[:size].rstrip(b"\n").count(b"\n") + 1
        got: list[Any] = []
        with open_snapshot(str(path)) as snap:
            with pytest.raises(VerifyError) as info:
                for _, rows in snap.tables():
                    for row in rows:
                        got.append(row)
            assert message.format(line=line) in str(info.value)
            assert info.value.fields["line"] == line
            assert len(got) == 3 + whole  # every whole row before the cut, then the error
            # Reading on after the error never looks like the end of the table.
            with pytest.raises(VerifyError, match="truncated"):
                next(rows)


def test_removed_row_fails_the_count_at_the_table_end(db: str, tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    sqlsnap.export(db, str(path))
    lines = path.read_bytes().split(b"\n")
    victim = next(i for i, line in enumerate(lines) if line.startswith(b'{"id":42,"company_id"'))
    del lines[victim]
    path.write_bytes(b"\n".join(lines))
    first = lines.index(b'"users": [') + 1
    with open_snapshot(str(path)) as snap:
        tables = snap.tables()
        assert next(tables)[0] == "audit" and next(tables)[0] == "companies"
        name, rows = next(tables)
        with pytest.raises(VerifyError, match=(f"table 'users' \\(lines {first}-{first + USERS - 1}\\): "
                                               f"{USERS - 1} rows, but the metadata says {USERS}")):
            list(rows)
    # The same when the table is skipped rather than read; asking on never looks like the end.
    with open_snapshot(str(path)) as snap:
        tables = snap.tables()
        with pytest.raises(VerifyError, match="rows, but the metadata says"):
            for _ in tables:
                pass
        with pytest.raises(VerifyError, match="rows, but the metadata says"):
            next(tables)


def test_damaged_row_is_located(db: str, tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    sqlsnap.export(db, str(path))
    data = bytearray(path.read_bytes())
    pos = data.index(b'{"id":17,"company_id"')
    data[pos + 1] ^= 0x20
    path.write_bytes(bytes(data))
    line = bytes(data[:pos]).count(b"\n") + 1
    with open_snapshot(str(path)) as snap, pytest.raises(VerifyError) as info:
        read_all(snap)
    assert f"line {line} (table 'users', row 17): not valid JSON" in str(info.value)
    assert info.value.fields == {"path": str(path), "table": "users", "line": line}
    with open_snapshot(str(path)) as snap:  # raw rows are not decoded: the layout is whole
        assert len(read_all(snap, raw=True)["users"]) == USERS


def test_damaged_jsonl_and_compressed_files(db: str, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    sqlsnap.export(db, str(folder), format="jsonl")
    users = folder / "users.jsonl"
    data = users.read_bytes()
    users.write_bytes(data[:-1])  # the last newline missing
    with open_snapshot(str(folder)) as snap, pytest.raises(VerifyError, match=f"users.jsonl is truncated: "
                                                                         f"line {USERS} is cut short"):
        read_all(snap)
    users.write_bytes(b"\n".join(data.split(b"\n")[1:]))
    with open_snapshot(str(folder)) as snap, pytest.raises(
            VerifyError, match=f"users.jsonl table 'users' \\(lines 1-{USERS - 1}\\): {USERS - 1} rows"):
        read_all(snap)
    packed = tmp_path / "app.json.zst"
    sqlsnap.export(make_db(tmp_path / "big.db", payload=2000), str(packed))
    packed.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    with open_snapshot(str(packed)) as snap, pytest.raises(VerifyError, match="truncated|damaged"):
        read_all(snap)


# -- reading in order ------------------------------------------------------------------------

def test_tables_are_read_once_in_order(db: str, tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    sqlsnap.export(db, str(path))
    with open_snapshot(str(path)) as snap:
        tables = snap.tables()
        _, audit = next(tables)
        _, companies = next(tables)
        assert next(companies)["name"] == "Acme"
        name, users = next(tables)  # the rest of companies is skipped
        with pytest.raises(UsageError, match="read after the next table was asked for"):
            next(companies)
        assert next(users)["id"] == 1
        with pytest.raises(UsageError, match="read once"):
            snap.tables()
    with pytest.raises(UsageError, match="was closed"):
        next(users)


# -- bounded memory, and nothing left open ---------------------------------------------------

def test_memory_stays_flat_on_a_large_table(tmp_path: Path) -> None:
    users = 50_000
    path = tmp_path / "big.json.zst"
    sqlsnap.export(make_db(tmp_path / "big.db", users=users, payload=1000), str(path))  # ~57 MB of JSON
    tracemalloc.start()
    try:
        count = 0
        size = 0
        with open_snapshot(str(path)) as snap:
            for _, rows in snap.tables():
                for row in rows:
                    count += 1
                    size += len(row.get("bio", ""))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == users + 3 and size > 50_000_000
    # One 1 MiB block and its lines in flight, whatever the table's size.
    assert peak < 6 << 20, f"reading peaked at {peak / 1e6:.1f} MB"


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def age_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sqlsnap-age")]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_closing_early_leaves_no_thread_or_open_file(tmp_path: Path) -> None:
    db = make_db(tmp_path / "big.db", users=5000, payload=1000)
    key, public = keypair(tmp_path)
    sqlsnap.export(db, str(tmp_path / "app.json.zst.age"), encrypt_to=[public])
    sqlsnap.export(db, str(tmp_path / "folder"), format="jsonl", compress="gzip")
    gc.collect()
    before = open_fds()
    for location in ("app.json.zst.age", "folder"):
        snap = open_snapshot(str(tmp_path / location), identities=[key])
        tables = snap.tables()
        next(tables)
        next(tables)
        _, rows = next(tables)
        assert next(rows)["id"] == 1  # the age thread is now blocked on a full pipe
        snap.close()
        assert age_threads() == [] and open_fds() == before, location
    # The context manager closes on an error too.
    with pytest.raises(KeyError):
        with open_snapshot(str(tmp_path / "app.json.zst.age"), identities=[str(key)]) as snap:
            for _ in snap.tables():
                raise KeyError("stop")
    assert age_threads() == [] and open_fds() == before
