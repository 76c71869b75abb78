"""Exports to S3-compatible storage, against a real S3 HTTP server on loopback (moto's
server mode; see tests/_s3server.py): multipart uploads read back byte for byte, and every
way an upload can fail leaves nothing at the key and no open multipart upload, a server
stopped mid-upload and back within the abort's retries included; when it never comes back
(or Ctrl-C stops the retries), the error names the upload left and the command to remove it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sqlsnap.cli import main
from sqlsnap.errors import ConnectError, Interrupted, SnapError
from sqlsnap.stores import s3 as s3mod

from ._s3server import TEST_ENV, S3Process, S3Proxy, S3Server, aws_env, free_port

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


def keys(server: S3Server | S3Process, bucket: str) -> list[str]:
    return [o["Key"] for o in server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def open_uploads(server: S3Server | S3Process, bucket: str) -> list[dict]:  # type: ignore[type-arg]
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


def test_jsonl_to_s3_appears_whole_with_its_manifest_last(
        s3: S3Server, bucket: str, big_db: str, small_parts: int, tmp_path: Path) -> None:
    """A JSON Lines snapshot under an S3 prefix: one object per table and the manifest, the
    same bytes as the local folder, verified from the bucket; the prefix is never reused."""
    code, out, err = run("export", big_db, "--format", "jsonl", "-o", f"s3://{bucket}/dumps/{{database}}/",
                         "--s3-endpoint", s3.endpoint, "--json", "-q")
    assert code == 0, err
    summary = json.loads(out)
    assert sorted(keys(s3, bucket)) == ["dumps/big/accounts.jsonl", "dumps/big/events.jsonl",
                                        "dumps/big/metadata.json"]
    assert open_uploads(s3, bucket) == []
    local = tmp_path / "local"
    assert run("export", big_db, "--format", "jsonl", "-o", str(local), "-q")[0] == 0
    client = s3.client()
    for name in ("accounts.jsonl", "events.jsonl"):
        body = client.get_object(Bucket=bucket, Key=f"dumps/big/{name}")["Body"].read()
        assert body == (local / name).read_bytes()
    manifest = json.loads(client.get_object(Bucket=bucket, Key="dumps/big/metadata.json")["Body"].read())
    assert manifest["tables"]["events"]["rows"] == BIG_ROWS and summary["rows"] == BIG_ROWS + 50
    assert summary["bytes"] == sum(o["Size"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    code, out, err = run("export", big_db, "--format", "jsonl", "-o", f"s3://{bucket}/dumps/big/",
                         "--s3-endpoint", s3.endpoint, "-q")
    assert code == 6
    assert_one_line_error(err, f"s3://{bucket}/dumps/big/ already exists")


def test_jsonl_to_s3_that_fails_leaves_nothing(
        s3: S3Server, bucket: str, big_db: str, small_parts: int) -> None:
    s3.deny_parts_after = 1
    code, out, err = run("export", big_db, "--format", "jsonl", "-o", f"s3://{bucket}/dumps/x/",
                         "--s3-endpoint", s3.endpoint, "-q")
    assert code == 6, err
    assert_one_line_error(err, "access denied", "s3:PutObject")
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
        server.client().create_bucket(Bucket="backups")
        code, out, err = run("export", big_db, "-o", "s3://backups/app.json", "--s3-endpoint",
                             server.endpoint, "-q")
    finally:
        server.stop()
    assert code == 6, err
    assert_one_line_error(err, f"cannot reach {server.endpoint} to upload s3://backups/app.json",
                          # The abort could not reach the dead server either: say what is left.
                          "could not be aborted (",
                          "aws s3api abort-multipart-upload --bucket backups --key app.json --upload-id")
    # Refused, or cut off if the abort's request raced the server's exit (botocore names the
    # two differently; both mean the server is gone).
    assert re.search(r"could not be aborted \((EndpointConnectionError|ConnectionClosedError);", err), err


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
    sink = s3mod.S3Store("backups", endpoint).create("my dump.json")
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
    # The retries within ABORT_RETRY_SECONDS: 2-3 on a quiet host, one when making the client
    # took most of the 0.6 s (seen twice under load); one attempt is said without a count.
    assert re.search(r"the unfinished multipart upload could not be aborted \(EndpointConnectionError"
                     r"(; \d+ attempts in \d+ s)?\); remove it with: aws s3api abort-multipart-upload "
                     r"--bucket backups --key 'my dump.json' --upload-id UPLOAD-1 "
                     rf"--endpoint-url {endpoint}  ",
                     message), message
    sink.abort()  # nothing left to do: the exporter's second call


@pytest.fixture
def moto_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Process]:
    """moto's server in a process of its own, with a bucket ``backups``."""
    aws_env(monkeypatch)
    server = S3Process()
    try:
        server.client().create_bucket(Bucket="backups")
        yield server
    finally:
        server.stop()


def printed_upload_id(stderr: str) -> str:
    found = re.search(r"--upload-id (\S+)", stderr)
    assert found, stderr
    return shlex.split(found[1])[0]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "zstd+age"])
def test_server_stopped_mid_upload_and_back_soon_leaves_nothing(
        moto_process: S3Process, big_db: str, small_parts: int, encrypted: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 server stops in the middle of an upload (at the second part) and is back 2 s
    later with its state: the export fails, and its abort, retried until the server answers,
    removes the upload.

    How the server stops and comes back: moto keeps its state in the memory of its process,
    so a moto killed and started again would have lost the upload and the bucket; the abort
    would then answer NoSuchUpload (or NoSuchBucket) and this test would prove nothing. A real
    store (MinIO, Ceph, S3) keeps unfinished uploads across a restart. So moto runs in its own
    long-lived process, and the endpoint is a TCP proxy on loopback (``S3Proxy``) that owns the
    port: stopping it closes the port and resets every open connection (the part being sent,
    whose start the server has, included), which is all a client can see of a crashed server
    (reset connections, then connection refused); starting it again listens on the same port
    in front of the same state. Making moto itself refuse connections for a while would need
    hooks into werkzeug's serving loop inside the server, and would not drop the requests in
    flight the way the kernel does for a dead process.

    One attempt per request (AWS_MAX_ATTEMPTS=1): the part that failed is not sent again once
    the server is back, which would let the export succeed; what is tested is the abort.
    """
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(s3mod, "ABORT_RETRY_SECONDS", 20.0)  # ends the test if the server never answers
    proxy = S3Proxy(moto_process.port, stop_at_part=2, restart_after=2.0)
    name = "app.json.zst.age" if encrypted else "app.json"
    extra = []
    if encrypted:
        extra = ["--encrypt-to", str(pytest.importorskip("pyrage").x25519.Identity.generate().to_public())]
    try:
        code, out, err = run("export", big_db, "-o", f"s3://backups/{name}", "--s3-endpoint", proxy.endpoint,
                             "-q", *extra)
        ended = time.monotonic()
    finally:
        proxy.close()
    assert code == 6, err
    assert proxy.stopped_at is not None and proxy.restarted_at is not None
    assert_one_line_error(err, f"to upload s3://backups/{name}")
    assert "could not be aborted" not in err and "abort-multipart-upload" not in err
    # The server was down when the upload failed: the abort was retried until it was back.
    assert ended > proxy.restarted_at
    before = [line for generation, line in proxy.requests if generation == 1]
    after = [line for generation, line in proxy.requests if generation == 2]
    assert any(line.startswith("POST ") and "uploads" in line for line in before), before  # started
    assert any("partNumber=2" in line for line in before), before  # stopped mid-upload
    assert [line.split("?")[0] for line in after] == [f"DELETE /backups/{name}"], after  # the abort
    assert keys(moto_process, "backups") == []
    assert open_uploads(moto_process, "backups") == []


def test_server_stopped_mid_upload_for_good_names_the_upload_left(
        moto_process: S3Process, big_db: str, small_parts: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server stops mid-upload and does not come back within ABORT_RETRY_SECONDS: the
    message names the upload left open and a command that removes it (checked by running it
    once the server is back)."""
    monkeypatch.setattr(s3mod, "ABORT_RETRY_SECONDS", 1.5)
    proxy = S3Proxy(moto_process.port, stop_at_part=2)
    try:
        started = time.monotonic()
        code, out, err = run("export", big_db, "-o", "s3://backups/dumps/app.json", "--s3-endpoint",
                             proxy.endpoint, "-q")
        seconds = time.monotonic() - started
        assert code == 6, err
        assert_one_line_error(err, "to upload s3://backups/dumps/app.json",
                              "the unfinished multipart upload could not be aborted "
                              "(EndpointConnectionError;",
                              "aws s3api abort-multipart-upload --bucket backups --key dumps/app.json "
                              "--upload-id ", f"--endpoint-url {proxy.endpoint}",
                              "AbortIncompleteMultipartUpload")
        attempts = int(re.search(r"; (\d+) attempts in \d+ s\)", err)[1])  # type: ignore[index]
        assert attempts >= 2, err  # retried: 0.5 s later, then at the deadline (3 on a quiet machine)
        assert 1.5 <= seconds < 15, seconds
        # What the message says is left is there, and is all there is.
        upload_id = printed_upload_id(err)
        assert [(u["Key"], u["UploadId"]) for u in open_uploads(moto_process, "backups")] == [
            ("dumps/app.json", upload_id)]
        assert keys(moto_process, "backups") == []

        proxy.start()  # the server is back: the printed command removes the upload
        command = re.search(r"remove it with: (aws s3api .*?)  \(or set", err)[1]  # type: ignore[index]
        if shutil.which("aws"):
            subprocess.run(shlex.split(command), check=True, capture_output=True, timeout=60)
        else:
            moto_process.client().abort_multipart_upload(Bucket="backups", Key="dumps/app.json",
                                                         UploadId=upload_id)
        assert open_uploads(moto_process, "backups") == []
    finally:
        proxy.close()


# The Ctrl-C can land inside urllib3's create_connection() between socket() and connect():
# it closes the socket on OSError only, so the KeyboardInterrupt leaves one socket, never
# connected, to the garbage collector, whose ResourceWarning pytest turns into an error
# (seen once in ten CI runs). The CLI exits right after, which closes it; nothing else here
# may leak.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket fd=[0-9]+, family=2, type=1, proto=6, "
    "laddr=..0.0.0.0., 0.>:pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_stops_the_abort_retries_at_once_and_says_what_is_left(
        moto_process: S3Process, big_db: str, small_parts: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server stops mid-upload for good; Ctrl-C 2 s into the abort's 30 s of retries stops
    them at once, and the message still names the upload left and the command to remove it."""
    assert s3mod.ABORT_RETRY_SECONDS >= 30
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the abort starts a few ms after the stop
    proxy = S3Proxy(moto_process.port, stop_at_part=2)
    running = threading.Lock()
    running.acquire()
    sent: list[float] = []

    def ctrl_c() -> None:
        if proxy.stopped.wait(60):
            time.sleep(2.0)
            if running.locked():
                sent.append(time.monotonic())
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    helper = threading.Thread(target=ctrl_c, daemon=True)
    helper.start()
    try:
        code, out, err = run("export", big_db, "-o", "s3://backups/app.json", "--s3-endpoint",
                             proxy.endpoint, "-q")
        ended = time.monotonic()
        running.release()
        helper.join()
    finally:
        proxy.close()
    assert sent, err
    assert code == 130, err
    assert ended - sent[0] < 2.0  # at once: not the 28 s of retries left
    assert_one_line_error(err, "to upload s3://backups/app.json",
                          "the unfinished multipart upload was left open (its abort was interrupted after",
                          "aws s3api abort-multipart-upload --bucket backups --key app.json --upload-id ")
    upload_id = printed_upload_id(err)
    assert [u["UploadId"] for u in open_uploads(moto_process, "backups")] == [upload_id]


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
