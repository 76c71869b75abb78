"""``sqlsnap prune``: exactly the right snapshots (and their checksum files) go, in a local
folder and in a bucket on a real S3 server; everything that is not a sqlsnap snapshot stays."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from sqlsnap.cli import main
from sqlsnap.prune import parse_age, prune

from ._s3server import S3Server, aws_env

NOW = datetime.now(UTC).replace(microsecond=0)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def stamp(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H-%M-%SZ")


def snapshot(folder: Path, name: str, *, sidecar: bool = True, body: bytes = b"encrypted or not") -> Path:
    path = folder / name
    path.write_bytes(body)
    if sidecar:
        (folder / (name + ".sha256")).write_text("0" * 64 + f"  {name}\n")
    return path


@pytest.fixture
def sqlite_snapshot(tmp_path: Path) -> bytes:
    """A real snapshot written to stdout (so without a checksum file)."""
    path = tmp_path / "src.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    result = CliRunner().invoke(main, ["export", f"sqlite:///{path}", "-o", "-", "-q", "--compress", "zstd"])
    assert result.exit_code == 0
    return result.stdout_bytes


@pytest.fixture
def dumps(tmp_path: Path, sqlite_snapshot: bytes) -> Path:
    folder = tmp_path / "dumps"
    folder.mkdir()
    for days in (0.5, 3, 8, 15, 31, 60):
        snapshot(folder, f"app-{stamp(days)}.json.zst.age")
    # A snapshot without its checksum file, recognised by its first bytes.
    snapshot(folder, f"app-{stamp(90)}.json.zst", sidecar=False, body=sqlite_snapshot)
    # Not sqlsnap's: left alone whatever their age.
    snapshot(folder, f"app-{stamp(120)}.json", sidecar=False, body=b'{"hello": 1}')
    (folder / "notes.txt").write_text("keep me")
    (folder / f".app-{stamp(200)}.json.tmp-1-abcd").write_text("in progress")
    (folder / "older").mkdir()
    snapshot(folder / "older", f"app-{stamp(400)}.json")
    snapshot(folder, f"billing-{stamp(100)}.json.gz")
    return folder


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_keep_last_and_older_than(dumps: Path) -> None:
    before = names(dumps)
    code, out, err = run("prune", f"{dumps}/app-", "--keep-last", "2", "--older-than", "10d")
    assert code == 0, err
    gone = {f"app-{stamp(d)}.json.zst.age" for d in (15, 31, 60)} | {f"app-{stamp(90)}.json.zst"}
    gone |= {f"app-{stamp(d)}.json.zst.age.sha256" for d in (15, 31, 60)}
    assert names(dumps) == before - gone
    deleted = out.splitlines()
    assert len(deleted) == 4 and all(line.startswith("deleted ") for line in deleted)
    assert f"ignored {dumps}/app-{stamp(120)}.json" in err
    assert "kept 3 snapshots, deleted 4" in err
    assert (dumps / "older" / f"app-{stamp(400)}.json").exists()


def test_keep_last_alone_counts_every_snapshot_in_the_folder(dumps: Path) -> None:
    code, out, err = run("prune", str(dumps), "--keep-last", "3", "--json")
    assert code == 0, err
    result = json.loads(out)
    kept = [Path(s["name"]).name for s in result["kept"]]
    assert kept == [f"app-{stamp(d)}.json.zst.age" for d in (0.5, 3, 8)]
    assert {Path(s["name"]).name for s in result["deleted"]} == (
        {f"app-{stamp(d)}.json.zst.age" for d in (15, 31, 60)}
        | {f"app-{stamp(90)}.json.zst", f"billing-{stamp(100)}.json.gz"})
    assert "notes.txt" in names(dumps) and f"app-{stamp(120)}.json" in names(dumps)


def test_older_than_alone_never_deletes_the_newest(tmp_path: Path) -> None:
    for days in (40, 50, 60):
        snapshot(tmp_path, f"app-{stamp(days)}.json")
    code, out, err = run("prune", str(tmp_path), "--older-than", "30d")
    assert code == 0, err
    assert names(tmp_path) == {f"app-{stamp(40)}.json", f"app-{stamp(40)}.json.sha256"}


def test_dry_run_deletes_nothing(dumps: Path) -> None:
    before = names(dumps)
    code, out, err = run("prune", f"{dumps}/app-", "--keep-last", "1", "--dry-run")
    assert code == 0, err
    assert names(dumps) == before
    assert len(out.splitlines()) == 6 and all(line.startswith("would delete ") for line in out.splitlines())
    assert "would delete 6" in err


def test_modification_time_without_a_timestamp_in_the_name(tmp_path: Path) -> None:
    for i, days in enumerate((1, 20, 40)):
        path = snapshot(tmp_path, f"nightly-{i}.json")
        t = (NOW - timedelta(days=days)).timestamp()
        os.utime(path, (t, t))
    result = prune(str(tmp_path), older_than="10d")
    assert sorted(Path(s.name).name for s in result.deleted) == ["nightly-1.json", "nightly-2.json"]
    assert names(tmp_path) == {"nightly-0.json", "nightly-0.json.sha256"}


def test_jsonl_folders_are_snapshots(tmp_path: Path) -> None:
    db = tmp_path / "src.db"
    sqlite3.connect(db).execute("CREATE TABLE t (id INTEGER)").connection.commit()
    for days in (1, 5):
        code, _, err = run("export", f"sqlite:///{db}", "--format", "jsonl", "-q",
                           "-o", str(tmp_path / f"src-{stamp(days)}"))
        assert code == 0, err
    result = prune(str(tmp_path / "src-"), keep_last=1)
    assert [Path(s.name).name for s in result.deleted] == [f"src-{stamp(5)}"]
    assert not (tmp_path / f"src-{stamp(5)}").exists() and (tmp_path / f"src-{stamp(1)}").is_dir()


@pytest.mark.parametrize(("args", "code", "message"), [
    ([], 2, "--keep-last N, --older-than AGE"),
    (["--older-than", "thirty days"], 2, "is not an age"),
    (["--keep-last", "0"], 2, "0"),
])
def test_usage_errors(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = run("prune", str(tmp_path), *args)
    assert result[0] == code and message in result[2]


def test_missing_folder(tmp_path: Path) -> None:
    code, out, err = run("prune", str(tmp_path / "nope") + "/", "--keep-last", "1")
    assert code == 4 and "does not exist" in err


def test_parse_age() -> None:
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("1d12h") == timedelta(days=1, hours=12)
    assert parse_age("2w") == timedelta(weeks=2)
    assert parse_age("90m") == timedelta(minutes=90)


# -- S3 -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    pytest.importorskip("moto")
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    aws_env(monkeypatch)
    return s3_server


def test_prune_a_bucket_prefix(s3: S3Server, sqlite_snapshot: bytes) -> None:
    client = s3.client()
    bucket = f"sqlsnap-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)

    def put(key: str, body: bytes = b"x", sidecar: bool = True) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=body)
        if sidecar:
            client.put_object(Bucket=bucket, Key=key + ".sha256", Body=b"0" * 64 + b"  name\n")

    for days in (1, 2, 12, 20, 45):
        put(f"dumps/app-{stamp(days)}.json.zst")
    put(f"dumps/app-{stamp(50)}.json.zst", sqlite_snapshot, sidecar=False)  # recognised by its head
    put(f"dumps/app-{stamp(70)}.json", b'{"not": "ours"}', sidecar=False)  # ignored
    put("dumps/readme.txt", sidecar=False)
    put(f"dumps/2025/app-{stamp(300)}.json.zst")  # a deeper "folder": not looked at
    put(f"other/app-{stamp(300)}.json.zst")
    before = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}

    code, out, err = run("prune", f"s3://{bucket}/dumps/", "--keep-last", "2", "--older-than", "15d",
                         "--s3-endpoint", s3.endpoint, "--dry-run")
    assert code == 0, err
    assert len(out.splitlines()) == 3
    assert {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]} == before

    code, out, err = run("prune", f"s3://{bucket}/dumps/", "--keep-last", "2", "--older-than", "15d",
                         "--s3-endpoint", s3.endpoint)
    assert code == 0, err
    gone = {f"dumps/app-{stamp(d)}.json.zst" for d in (20, 45, 50)} | {
        f"dumps/app-{stamp(d)}.json.zst.sha256" for d in (20, 45)}
    after = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert after == before - gone
    assert out.splitlines() == sorted(out.splitlines(), reverse=True)  # newest first
    assert f"ignored s3://{bucket}/dumps/app-{stamp(70)}.json" in err
