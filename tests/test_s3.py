"""Exports to S3-compatible storage, against a real S3 HTTP server on loopback (moto's
server mode; see tests/_s3server.py): multipart uploads read back byte for byte, and every
way an upload can fail leaves nothing at the key and no open multipart upload."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sqlsnap.cli import main
from sqlsnap.errors import ConnectError, Interrupted, SnapError
from sqlsnap.sinks import s3 as s3mod

from ._s3server import TEST_ENV, S3Process, S3Server, aws_env, free_port

pytest.importorskip("boto3")
pytest.importorskip("moto")

BIG_ROWS = 22_000  # 1 KB rows: a ~23 MB document, 5 parts of 5 MiB
SECRET = TEST_ENV["AWS_SECRET_ACCESS_KEY"]
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z")


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    aws_env(monkeypatch)
    s3_server.reset_faults()
    yield s3_server
    s3_server.reset_faults()


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"sqlsnap-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> int:
    """S3's (and moto's) minimum part size, so that tests need less data for many parts."""
    monkeypatch.setattr(s3mod, "PART_BYTES", 5 << 20)
    return 5 << 20


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("s3db") / "big.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES accounts(id), "
                 "payload TEXT NOT NULL)")
    conn.executemany("INSERT INTO accounts VALUES (?, ?)", [(i, f"account {i}") for i in range(1, 51)])
    rnd = __import__("random").Random(7)
    conn.executemany("INSERT INTO events VALUES (?, ?, ?)",
                     ((i, 1 + i % 50, rnd.randbytes(480).hex()) for i in range(BIG_ROWS)))
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


@pytest.fixture
def small_db(tmp_path: Path) -> str:
    path = tmp_path / "small.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes VALUES (?, ?)", [(i, f"note {i}") for i in range(100)])
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def keys(server: S3Server, bucket: str) -> list[str]:
    return [o["Key"] for o in server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def open_uploads(server: S3Server, bucket: str) -> list[dict]:  # type: ignore[type-arg]
    return list(server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in stderr
    assert SECRET not in stderr and TEST_ENV["AWS_ACCESS_KEY_ID"] not in stderr


def test_export_streams_a_multipart_upload_and_reads_back_identical(
        s3: S3Server, bucket: str, big_db: str, small_parts: int, tmp_path: Path) -> None:
    code, out, err = run("export", big_db, "-o", f"s3://{bucket}/dumps/{{database}}-{{timestamp}}.json",
                         "--s3-endpoint", s3.endpoint, "--json", "-q")
    assert code == 0, err
    summary = json.loads(out)
    url = summary["path"]
    assert url.startswith(f"s3://{bucket}/dumps/big-") and STAMP.search(url), url
    key = url.split("/", 3)[3]
    assert sorted(keys(s3, bucket)) == [key, key + ".sha256"]
    assert summary["checksum_file"] == url + ".sha256"
    assert summary["rows_per_table"] == {"accounts": 50, "events": BIG_ROWS}

    client = s3.client()
    head = client.head_object(Bucket=bucket, Key=key)
    parts = int(head["ETag"].strip('"').rsplit("-", 1)[1])
    assert parts >= 4 and summary["bytes"] > (parts - 1) * small_parts
    # Parts of exactly the same size but the last (Cloudflare R2 requires it).
    sizes = [client.head_object(Bucket=bucket, Key=key, PartNumber=n)["ContentLength"]
             for n in range(1, parts + 1)]
    assert sizes[:-1] == [small_parts] * (parts - 1) and 0 < sizes[-1] <= small_parts
    assert head["ContentLength"] == summary["bytes"]
    assert head["ContentType"] == "application/json"
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == summary["sha256"]
    sidecar = client.get_object(Bucket=bucket, Key=key + ".sha256")["Body"].read().decode()
    assert sidecar == f"{summary['sha256']}  {key.rsplit('/', 1)[1]}\n"
    document = json.loads(body)
    assert len(document["data"]["events"]) == BIG_ROWS
    assert open_uploads(s3, bucket) == []

    # sha256sum -c accepts the checksum file next to a downloaded copy.
    if shutil.which("sha256sum"):
        (tmp_path / key.rsplit("/", 1)[1]).write_bytes(body)
        (tmp_path / "check.sha256").write_text(sidecar)
        subprocess.run(["sha256sum", "-c", "check.sha256"], cwd=tmp_path, check=True, capture_output=True)

    code, out, err = run("verify", url, "--s3-endpoint", s3.endpoint, "--integrity")
    assert code == 0, err
    assert out.startswith(f"OK {url}: 2 tables, {BIG_ROWS + 50:,} rows") and "sha256 matches" in out


def test_compressed_encrypted_export_to_s3_verifies_with_identity(
        s3: S3Server, bucket: str, big_db: str, small_parts: int, tmp_path: Path) -> None:
    pyrage = pytest.importorskip("pyrage")
    identity = pyrage.x25519.Identity.generate()
    key_file = tmp_path / "key.txt"
    key_file.write_text(str(identity) + "\n")
    url = f"s3://{bucket}/app.json.zst.age"
    code, out, err = run("export", big_db, "-o", url, "--s3-endpoint", s3.endpoint,
                         "--encrypt-to", str(identity.to_public()), "--json", "-q")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["encrypted"] and summary["compression"] == "zstd"
    body = s3.client().get_object(Bucket=bucket, Key="app.json.zst.age")["Body"].read()
    assert body.startswith(b"age-encryption.org/v1\n")
    assert hashlib.sha256(body).hexdigest() == summary["sha256"]

    code, out, err = run("verify", url, "--s3-endpoint", s3.endpoint, "--identity", str(key_file))
    assert code == 0, err
    assert "OK" in out and f"{BIG_ROWS + 50:,} rows" in out
    # Without the identity, only the checksum file can be checked: said so.
    code, out, err = run("verify", url, "--s3-endpoint", s3.endpoint)
    assert code == 0 and out.startswith("OK (checksum only)"), (out, err)


def test_small_export_is_one_put_and_endpoint_comes_from_the_environment(
        s3: S3Server, bucket: str, small_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    code, out, err = run("export", small_db, "-o", f"s3://{bucket}/small.json.gz", "--json", "-q")
    assert code == 0, err
    head = s3.client().head_object(Bucket=bucket, Key="small.json.gz")
    assert "-" not in head["ETag"]  # a single PutObject, no multipart upload
    assert head["ContentType"] == "application/gzip"
    assert sorted(keys(s3, bucket)) == ["small.json.gz", "small.json.gz.sha256"]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "zstd+age"])
def test_failed_part_aborts_the_upload_and_leaves_nothing(
        s3: S3Server, bucket: str, big_db: str, small_parts: int, encrypted: bool) -> None:
    s3.deny_parts_after = 1
    name = "app.json.zst.age" if encrypted else "app.json"
    extra = []
    if encrypted:
        extra = ["--encrypt-to", str(pytest.importorskip("pyrage").x25519.Identity.generate().to_public())]
    code, out, err = run("export", big_db, "-o", f"s3://{bucket}/dumps/{name}", "--s3-endpoint", s3.endpoint,
                         "-q", *extra)
    assert code == 6, err
    # The S3 error keeps its message through the compression and encryption threads.
    assert_one_line_error(err, f"access denied to upload s3://{bucket}/dumps/{name}", "s3:PutObject")
    assert "could not be aborted" not in err
    assert s3.parts_seen >= 2
    assert keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


def test_interrupt_during_upload_aborts_it(
        s3: S3Server, bucket: str, big_db: str, small_parts: int) -> None:
    import _thread

    def interrupt(n: int) -> None:
        if n == 2:
            _thread.interrupt_main()  # Ctrl-C while the second part is being received

    s3.on_part = interrupt
    code, out, err = run("export", big_db, "-o", f"s3://{bucket}/app.json", "--s3-endpoint", s3.endpoint,
                         "-q")
    assert code == 130, err
    assert "interrupted" in err
    assert keys(s3, bucket) == []
    assert open_uploads(s3, bucket) == []


def test_server_dying_mid_upload_fails_clearly(big_db: str, small_parts: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The server process crashes (exits) at the second part and never comes back."""
    aws_env(monkeypatch)
    monkeypatch.setattr(s3mod, "ABORT_RETRY_SECONDS", 1.0)
    server = S3Process(die_at_part=2)
    try:
        import boto3

        boto3.session.Session().client("s3", endpoint_url=server.endpoint).create_bucket(Bucket="backups")
        code, out, err = run("export", big_db, "-o", "s3://backups/app.json", "--s3-endpoint",
                             server.endpoint, "-q")
    finally:
        server.stop()
    assert code == 6, err
    assert_one_line_error(err, f"cannot reach {server.endpoint} to upload s3://backups/app.json",
                          # The abort could not reach the dead server either: say what is left.
                          "could not be aborted (EndpointConnectionError;",
                          "aws s3api abort-multipart-upload --bucket backups --key app.json --upload-id")


@pytest.mark.parametrize("cause", [
    Interrupted("interrupted; the export was abandoned and no file was left behind"),
    ConnectError("lost the connection to the database server"),
], ids=["ctrl-c", "source-error"])
def test_abort_after_another_failure_says_what_is_left(cause: SnapError,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter calls abort() in its except blocks and drops what it returns: when the
    store cannot be reached, abort() raises the error being handled with the note instead."""
    aws_env(monkeypatch)
    monkeypatch.setattr(s3mod, "ABORT_RETRY_SECONDS", 0.6)
    endpoint = f"http://127.0.0.1:{free_port()}"
    sink = s3mod.S3Target("s3://backups/my dump.json", endpoint).sink()
    sink.upload_id = "UPLOAD-1"  # as if the first part had been sent before the store went away
    with pytest.raises(type(cause)) as raised:
        try:
            raise cause
        except SnapError:
            sink.abort()
            raise
    message = str(raised.value)
    assert raised.value is not cause and message.startswith(cause.message.split(";")[0]), message
    assert "no file was left behind" not in message
    assert re.search(r"the unfinished multipart upload could not be aborted \(EndpointConnectionError; "
                     r"[23] attempts in 1 s\); remove it with: aws s3api abort-multipart-upload --bucket "
                     rf"backups --key 'my dump.json' --upload-id UPLOAD-1 --endpoint-url {endpoint}  ",
                     message), message
    sink.abort()  # nothing left to do: the exporter's second call


def test_missing_bucket_fails_before_reading_the_database(s3: S3Server, small_db: str) -> None:
    code, out, err = run("export", small_db, "-o", "s3://no-such-bucket-sqlsnap/x.json", "--s3-endpoint",
                         s3.endpoint)
    assert code == 4
    assert_one_line_error(err, "bucket 'no-such-bucket-sqlsnap' does not exist")
    assert "exporting" not in err


def test_unreachable_endpoint(small_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    aws_env(monkeypatch)
    endpoint = f"http://127.0.0.1:{free_port()}"
    code, out, err = run("export", small_db, "-o", "s3://backups/x.json", "--s3-endpoint", endpoint)
    assert code == 6
    assert_one_line_error(err, f"cannot reach {endpoint}", "--s3-endpoint")


def test_missing_credentials(s3: S3Server, bucket: str, small_db: str,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out, err = run("export", small_db, "-o", f"s3://{bucket}/x.json", "--s3-endpoint", s3.endpoint)
    assert code == 6
    assert_one_line_error(err, "no usable AWS credentials", "AWS_ACCESS_KEY_ID")


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "jsonl", "-o", "s3://b/folder/"], "JSON Lines output to S3 is not supported"),
    (["-o", "s3://b/"], "names no object"),
    (["-o", "s3:///x.json"], "has no bucket"),
    (["-o", "ftp://host/x.json"], "unsupported destination 'ftp://'"),
])
def test_bad_s3_destinations_are_usage_errors(small_db: str, args: list[str], message: str) -> None:
    code, out, err = run("export", small_db, *args)
    assert code == 2
    assert_one_line_error(err, message)


def test_missing_boto3_names_the_extra(small_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    code, out, err = run("export", small_db, "-o", "s3://b/x.json")
    assert code == 5
    assert_one_line_error(err, "pip install 'sqlsnap[s3]'")


def test_local_outputs_take_placeholders_too(small_db: str, tmp_path: Path) -> None:
    pattern = str(tmp_path / "{database}-{environment}-{export_type}-{timestamp}.json")
    code, out, err = run("export", small_db, "-o", pattern, "--environment", "staging", "--json", "-q")
    assert code == 0, err
    path = json.loads(out)["path"]
    name = os.path.basename(path)
    assert name.startswith("small-staging-full-") and STAMP.search(name)
    assert sorted(os.listdir(tmp_path)) == sorted(["small.db", name, name + ".sha256"])
    code, out, err = run("export", small_db, "-o", str(tmp_path / "{environment}.json"))
    assert code == 2 and "--environment" in err
    code, out, err = run("export", small_db, "-o", str(tmp_path / "{host}.json"))
    assert code == 2 and "unknown placeholder {host}" in err
