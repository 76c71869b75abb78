"""``sqlsnap prune``: exactly the right snapshots (and their checksum files) go, in a local
folder, in a bucket on a real S3 server and in a memory store (the same test bodies, one
code path through the Store interface); everything that is not a sqlsnap snapshot stays."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from sqlsnap.cli import main
from sqlsnap.prune import parse_age, prune
from sqlsnap.stores import open_store
from sqlsnap.stores.memory import MemoryStore

from ._s3server import S3Server, aws_env

NOW = datetime.now(UTC).replace(microsecond=0)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def stamp(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H-%M-%SZ")


@dataclass
class Place:
    """A folder of snapshots in one kind of store, seen from outside sqlsnap's stores where
    possible (the file system, boto3). ``str(place)`` is the folder as prune names it."""

    kind: str
    #: The folder's location without a trailing slash: a path, s3://bucket/dumps, memory://name/dumps.
    root: str
    write: Callable[[str, bytes], None]
    names: Callable[[], set[str]]
    exists: Callable[[str], bool]
    #: Sets a name's modification time (None where the store has no way: S3).
    touch: Callable[[str, float], None] | None = None

    def __str__(self) -> str:
        return self.root

    @property
    def folder(self) -> str:
        """The whole folder as prune takes it: a local folder by its name, a prefix with its /."""
        return self.root if self.kind == "file" else self.root + "/"


@pytest.fixture(params=["file", "s3", "memory"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "file":
        folder = tmp_path / "dumps"
        folder.mkdir()

        def write_file(name: str, body: bytes) -> None:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(body)

        def utime(name: str, t: float) -> None:
            os.utime(folder / name, (t, t))

        return Place("file", str(folder), write_file, lambda: {p.name for p in folder.iterdir()},
                     lambda name: (folder / name).exists(), utime)
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3")
        request.getfixturevalue("monkeypatch").setenv("AWS_ENDPOINT_URL", server.endpoint)  # for the CLI
        client = server.client()
        bucket = f"sqlsnap-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)

        def put(name: str, body: bytes) -> None:
            client.put_object(Bucket=bucket, Key=f"dumps/{name}", Body=body)

        def listed() -> set[str]:
            answer = client.list_objects_v2(Bucket=bucket, Prefix="dumps/", Delimiter="/")
            return ({o["Key"][len("dumps/"):] for o in answer.get("Contents", [])}
                    | {p["Prefix"][len("dumps/"):-1] for p in answer.get("CommonPrefixes", [])})

        def exists(name: str) -> bool:
            answer = client.list_objects_v2(Bucket=bucket, Prefix=f"dumps/{name}")
            return any(o["Key"] in (f"dumps/{name}",) or o["Key"].startswith(f"dumps/{name}/")
                       for o in answer.get("Contents", []))

        return Place("s3", f"s3://{bucket}/dumps", put, listed, exists)
    store, _ = open_store(f"memory://prune-{uuid.uuid4().hex[:8]}/")
    assert isinstance(store, MemoryStore)

    def touch(name: str, t: float) -> None:
        store.set_modified(f"dumps/{name}", datetime.fromtimestamp(t, UTC))

    return Place("memory", store.url("dumps"), lambda name, body: store.put(f"dumps/{name}", body),
                 lambda: {e.key[len("dumps/"):].rstrip("/") for e in store.list("dumps/")},
                 lambda name: store.exists(f"dumps/{name}"), touch)


def snapshot(folder: Place, name: str, *, sidecar: bool = True, body: bytes = b"encrypted or not") -> str:
    folder.write(name, body)
    if sidecar:
        folder.write(name + ".sha256", ("0" * 64 + f"  {name.rsplit('/', 1)[-1]}\n").encode())
    return name


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
def dumps(place: Place, sqlite_snapshot: bytes) -> Place:
    folder = place
    for days in (0.5, 3, 8, 15, 31, 60):
        snapshot(folder, f"app-{stamp(days)}.json.zst.age")
    # A snapshot without its checksum file, recognised by its first bytes.
    snapshot(folder, f"app-{stamp(90)}.json.zst", sidecar=False, body=sqlite_snapshot)
    # Not sqlsnap's: left alone whatever their age.
    snapshot(folder, f"app-{stamp(120)}.json", sidecar=False, body=b'{"hello": 1}')
    folder.write("notes.txt", b"keep me")
    folder.write(f".app-{stamp(200)}.json.tmp-1-abcd", b"in progress")
    snapshot(folder, f"older/app-{stamp(400)}.json")
    snapshot(folder, f"billing-{stamp(100)}.json.gz")
    return folder


def names(folder: Place) -> set[str]:
    return folder.names()


def test_keep_last_and_older_than(dumps: Place) -> None:
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
    assert dumps.exists(f"older/app-{stamp(400)}.json")


def test_keep_last_alone_counts_every_snapshot_in_the_folder(dumps: Place) -> None:
    code, out, err = run("prune", dumps.folder, "--keep-last", "3", "--json")
    assert code == 0, err
    result = json.loads(out)
    kept = [Path(s["name"]).name for s in result["kept"]]
    assert kept == [f"app-{stamp(d)}.json.zst.age" for d in (0.5, 3, 8)]
    assert {Path(s["name"]).name for s in result["deleted"]} == (
        {f"app-{stamp(d)}.json.zst.age" for d in (15, 31, 60)}
        | {f"app-{stamp(90)}.json.zst", f"billing-{stamp(100)}.json.gz"})
    assert "notes.txt" in names(dumps) and f"app-{stamp(120)}.json" in names(dumps)


def test_older_than_alone_never_deletes_the_newest(place: Place) -> None:
    for days in (40, 50, 60):
        snapshot(place, f"app-{stamp(days)}.json")
    code, out, err = run("prune", place.folder, "--older-than", "30d")
    assert code == 0, err
    assert names(place) == {f"app-{stamp(40)}.json", f"app-{stamp(40)}.json.sha256"}


def test_dry_run_deletes_nothing(dumps: Place) -> None:
    before = names(dumps)
    code, out, err = run("prune", f"{dumps}/app-", "--keep-last", "1", "--dry-run")
    assert code == 0, err
    assert names(dumps) == before
    assert len(out.splitlines()) == 6 and all(line.startswith("would delete ") for line in out.splitlines())
    assert "would delete 6" in err


@pytest.mark.parametrize("place", ["file", "memory"], indirect=True)  # S3 cannot set LastModified
def test_modification_time_without_a_timestamp_in_the_name(place: Place) -> None:
    assert place.touch is not None
    for i, days in enumerate((1, 20, 40)):
        path = snapshot(place, f"nightly-{i}.json")
        t = (NOW - timedelta(days=days)).timestamp()
        place.touch(path, t)
    result = prune(place.folder, older_than="10d")
    assert sorted(Path(s.name).name for s in result.deleted) == ["nightly-1.json", "nightly-2.json"]
    assert names(place) == {"nightly-0.json", "nightly-0.json.sha256"}


def test_jsonl_folders_are_snapshots(place: Place, tmp_path: Path) -> None:
    db = tmp_path / "src.db"
    sqlite3.connect(db).execute("CREATE TABLE t (id INTEGER)").connection.commit()
    (tmp_path / "export").mkdir()
    for days in (1, 5):
        # Exported locally (the exporter writes JSON Lines to folders), then copied to the place.
        local = tmp_path / "export" / f"src-{stamp(days)}"
        code, _, err = run("export", f"sqlite:///{db}", "--format", "jsonl", "-q", "-o", str(local))
        assert code == 0, err
        for file in sorted(local.iterdir()):
            place.write(f"{local.name}/{file.name}", file.read_bytes())
        shutil.rmtree(local)
    result = prune(f"{place}/src-", keep_last=1)
    assert [Path(s.name).name for s in result.deleted] == [f"src-{stamp(5)}"]
    assert not place.exists(f"src-{stamp(5)}") and place.exists(f"src-{stamp(1)}/metadata.json")
    assert names(place) == {f"src-{stamp(1)}"}


def test_a_folder_without_a_sqlsnap_manifest_is_left_alone(place: Place) -> None:
    place.write(f"src-{stamp(50)}/t.jsonl", b"{}\n")  # what an interrupted prune leaves: no manifest
    place.write(f"src-{stamp(60)}/metadata.json", b'{"format": "other"}')
    snapshot(place, f"src-{stamp(1)}.json")
    snapshot(place, f"src-{stamp(2)}.json")
    result = prune(place.folder, keep_last=1)
    assert [Path(s.name).name for s in result.deleted] == [f"src-{stamp(2)}.json"]
    assert names(place) == {f"src-{stamp(50)}", f"src-{stamp(60)}", f"src-{stamp(1)}.json",
                            f"src-{stamp(1)}.json.sha256"}


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


def test_grandfather_father_son_keeps_the_newest_of_each_day_week_and_month(place: Place) -> None:
    """Two snapshots a day, 1 February to 10 March 2026 (a Tuesday): 3 days, 3 ISO weeks and 2
    months keep five of them, each the last of its day; the service's schedules use this."""
    start = datetime(2026, 2, 1, tzinfo=UTC)
    for day in range(38):
        for hour in (6, 18):
            t = start + timedelta(days=day, hours=hour)
            snapshot(place, f"app-export-{t.strftime('%Y-%m-%dT%H-%M-%SZ')}-1.json.zst")
    result = prune(f"{place}/app-export-", keep_daily=3, keep_weekly=3, keep_monthly=2,
                   now=datetime(2026, 3, 11, tzinfo=UTC))
    # days: 10, 9 and 8 March; weeks: 11 (10 March), 10 (Sunday 8 March), 9 (Sunday 1 March);
    # months: March (10 March), February (28 February).
    days = ("03-10", "03-09", "03-08", "03-01", "02-28")
    kept = {f"app-export-2026-{d}T18-00-00Z-1.json.zst" for d in days}
    assert {Path(s.name).name for s in result.kept} == kept
    assert len(result.deleted) == 76 - 5
    assert names(place) == kept | {k + ".sha256" for k in kept}


def test_grandfather_father_son_counts_must_be_positive(tmp_path: Path) -> None:
    from sqlsnap.errors import UsageError

    with pytest.raises(UsageError, match="at least 1"):
        prune(str(tmp_path), keep_weekly=0)
