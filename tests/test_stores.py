"""Every store keeps the same promises (sqlsnap.stores.base): one test body runs against a
local folder, a bucket on a real S3 server on loopback (moto's server mode, with faults
injected in front of it) and the memory store. Objects appear whole or not at all; a batch
appears only on its commit, and a failed or abandoned batch leaves nothing, no hidden
temporary file and no open multipart upload either."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest

from sqlsnap.errors import NotFoundError, OutputError, SnapError, UsageError
from sqlsnap.format import MANIFEST
from sqlsnap.stores import Reader, Store, open_store
from sqlsnap.stores import s3 as s3mod
from sqlsnap.stores.memory import MemoryStore

from ._s3server import TEST_ENV, S3Server, _drain, aws_env

#: Above S3's 5 MiB minimum part (the tests' part size): three parts, the last one short.
BIG = random.Random(5).randbytes((11 << 20) + 12345)
SECRETS = (TEST_ENV["AWS_SECRET_ACCESS_KEY"], TEST_ENV["AWS_ACCESS_KEY_ID"])

_ERROR = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
          b"<Message>injected by the test</Message></Error>")


class FaultyS3Server(S3Server):
    """The tests' S3 server, whose CompleteMultipartUpload can fail for one key:

    - ``fail_complete = key``: answers 403 AccessDenied (the object does not appear);
    - ``lose_complete = key``: completes the upload, then answers 500 to it and to every retry
      (the object appears, the client never hears so: a connection lost on the way back).
    """

    def __init__(self) -> None:
        super().__init__()
        self.fail_complete: str | None = None
        self.lose_complete: str | None = None
        self.completes: list[str] = []

    def reset_faults(self) -> None:
        super().reset_faults()
        self.fail_complete = self.lose_complete = None
        self.completes = []

    def _middleware(self, app: Any) -> Any:
        inner = super()._middleware(app)
        lost: set[str] = set()

        def answer(start_response: Any, status: str, code: bytes) -> list[bytes]:
            body = _ERROR % code
            start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]

        def handle(environ: dict[str, Any], start_response: Any) -> Any:
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            if environ["REQUEST_METHOD"] == "POST" and "uploadId" in query:
                key = unquote(environ["PATH_INFO"]).split("/", 2)[2]
                self.completes.append(key)
                if key == self.fail_complete:
                    _drain(environ)
                    return answer(start_response, "403 Forbidden", b"AccessDenied")
                if key == self.lose_complete:
                    if key in lost:
                        _drain(environ)
                    else:
                        lost.add(key)
                        b"".join(app(environ, lambda *args: None))  # done, answer dropped
                    return answer(start_response, "500 Internal Server Error", b"InternalError")
            return inner(environ, start_response)

        return handle


@pytest.fixture(scope="module")
def s3_server() -> Iterator[FaultyS3Server]:
    pytest.importorskip("moto")
    server = FaultyS3Server()
    server.start()
    yield server
    server.stop()


@dataclass
class Kit:
    """A store under test and the means to look behind it."""

    name: str
    store: Store
    #: Hidden temporary files, open multipart uploads: whatever a write left behind.
    leftovers: Callable[[], list[str]]
    #: Every key in the store, seen from outside the store where possible.
    keys: Callable[[], list[str]]
    #: A location whose folder or bucket does not exist (None: the store has none).
    missing: str | None = None
    server: FaultyS3Server | None = None
    errors: list[str] = field(default_factory=list)


def _walk(store: Store, prefix: str = "") -> list[str]:
    found: list[str] = []
    for entry in store.list(prefix):
        found += _walk(store, entry.key) if entry.prefix else [entry.key]
    return found


@pytest.fixture(params=["file", "s3", "memory"])
def kit(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kit]:
    if request.param == "file":
        root = tmp_path / "root"
        root.mkdir()
        store, key = open_store(f"{root}/")
        assert key == ""

        def hidden() -> list[str]:
            return [str(p) for p in tmp_path.rglob(".*")]

        def files() -> list[str]:
            return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

        yield Kit("file", store, hidden, files, missing=str(tmp_path / "nope" / "app.json"))
    elif request.param == "s3":
        pytest.importorskip("boto3")
        server: FaultyS3Server = request.getfixturevalue("s3_server")
        aws_env(monkeypatch)
        server.reset_faults()
        monkeypatch.setattr(s3mod, "PART_BYTES", 5 << 20)  # S3's minimum: three parts for BIG
        client = server.client()
        bucket = f"sqlsnap-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        store, key = open_store(f"s3://{bucket}/", s3_endpoint=server.endpoint)
        assert key == ""

        def uploads() -> list[str]:
            return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

        def objects() -> list[str]:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

        yield Kit("s3", store, uploads, objects, missing=f"s3://no-such-{uuid.uuid4().hex[:8]}/app.json",
                  server=server)
        server.reset_faults()
    else:
        store, key = open_store(f"memory://test-{uuid.uuid4().hex[:8]}/")
        assert key == "" and isinstance(store, MemoryStore)
        yield Kit("memory", store, lambda: [], lambda: sorted(_walk(store)))


def read_all(reader: Reader) -> bytes:
    try:
        return b"".join(iter(lambda: reader.read(1 << 20), b""))
    finally:
        reader.close()


def write(upload: Any, data: bytes) -> None:
    for start in range(0, len(data), 1 << 20):
        upload.write(data[start:start + (1 << 20)])
    if not data:
        upload.write(b"")


def one_line_error(kit: Kit, exc: pytest.ExceptionInfo[SnapError], *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    for secret in SECRETS:
        assert secret not in message
    kit.errors.append(message)


def keys_under(kit: Kit, prefix: str) -> list[str]:
    return [k for k in kit.keys() if k.startswith(prefix)]


def test_store_conformance(kit: Kit) -> None:
    store = kit.store

    # Objects read back byte for byte: a multipart one, an empty one, a small one.
    objects = {"dumps/big.json.zst": BIG, "dumps/empty.json": b"", "dumps/small.json": b'{"metadata": {}}'}
    for key, data in objects.items():
        upload = store.create(key)
        write(upload, data)
        assert upload.bytes == len(data)
        assert not store.exists(key)  # not before the commit
        upload.commit()
        assert read_all(store.open(key)) == data
    if kit.server is not None:
        bucket = store.url("").split("/")[2]
        etag = kit.server.client().head_object(Bucket=bucket, Key="dumps/big.json.zst")["ETag"]
        assert etag.strip('"').endswith("-3")  # three parts of a multipart upload
    assert kit.leftovers() == []

    # An upload never committed, or aborted, leaves nothing visible and nothing behind.
    aborted, unfinished = store.create("dumps/aborted.json"), store.create("dumps/unfinished.json")
    write(aborted, BIG)
    write(unfinished, BIG[: 6 << 20])
    aborted.abort()
    aborted.abort()  # idempotent
    assert not store.exists("dumps/aborted.json") and not store.exists("dumps/unfinished.json")
    assert "dumps/unfinished.json" not in [e.key for e in store.list("dumps/")]
    unfinished.abort()
    assert kit.leftovers() == []
    assert kit.keys() == sorted(objects)

    # A batch: nothing visible until its commit, then every object, byte for byte.
    members = {"events.jsonl": BIG, "empty.jsonl": b"", "users.jsonl": b'{"id": 1}\n',
               MANIFEST: b'{"format": "sqlsnap", "version": 1}\n'}
    batch = store.batch("dumps/app-1")

    def member(name: str) -> None:
        upload = batch.create(name)
        write(upload, members[name])
        upload.commit()

    with ThreadPoolExecutor(4) as pool:  # as the exporter's readers do
        list(pool.map(member, [n for n in members if n != MANIFEST]))
    member(MANIFEST)
    assert not store.exists("dumps/app-1") and keys_under(kit, "dumps/app-1") == []
    assert [e.key for e in store.list("dumps/")] == sorted(objects)
    batch.commit()
    assert keys_under(kit, "dumps/app-1/") == sorted(f"dumps/app-1/{n}" for n in members)
    for name, data in members.items():
        assert read_all(store.open(f"dumps/app-1/{name}")) == data
    assert kit.leftovers() == []
    batch.abort()  # after the commit: nothing to do
    assert len(keys_under(kit, "dumps/app-1/")) == len(members)
    with pytest.raises(OutputError) as exc:
        store.batch("dumps/app-1")
    one_line_error(kit, exc, "already exists")

    def started(prefix: str, *, finish_all: bool = True) -> Any:
        """A batch with a committed big member, a committed small one and the manifest, and
        (unless finish_all) one left unfinished midway."""
        b = store.batch(prefix)
        for name, data in (("a.jsonl", BIG), ("b.jsonl", b"b\n"), (MANIFEST, b"{}")):
            upload = b.create(name)
            write(upload, data)
            upload.commit()
        if not finish_all:
            write(b.create("c.jsonl"), BIG[: 6 << 20])
        return b

    # A member aborted midway: the batch's commit fails and leaves nothing.
    b = started("dumps/app-2")
    failed = b.create("c.jsonl")
    write(failed, b"half")
    failed.abort()
    with pytest.raises(OutputError) as exc:
        b.commit()
    one_line_error(kit, exc, "c.jsonl", "not written to the end")
    assert keys_under(kit, "dumps/app-2") == [] and kit.leftovers() == []

    # Abandoned midway (one member still being written): nothing left.
    b = started("dumps/app-3", finish_all=False)
    b.abort()
    b.abort()  # idempotent
    assert keys_under(kit, "dumps/app-3") == [] and kit.leftovers() == []
    with pytest.raises(OutputError):
        b.commit()

    # Someone else writes at the prefix meanwhile: the commit fails, only theirs stays.
    b = started("dumps/app-4")
    store.put("dumps/app-4/theirs.txt", b"not ours")
    with pytest.raises(SnapError) as exc:
        b.commit()
    one_line_error(kit, exc)
    assert keys_under(kit, "dumps/app-4") == ["dumps/app-4/theirs.txt"] and kit.leftovers() == []

    if kit.server is not None:
        # One completion fails at commit: what was completed is deleted, the rest aborted.
        b = started("dumps/app-5")
        kit.server.fail_complete = "dumps/app-5/b.jsonl"
        with pytest.raises(OutputError) as exc:
            b.commit()
        one_line_error(kit, exc, "access denied", "dumps/app-5/b.jsonl")
        assert "dumps/app-5/a.jsonl" in kit.server.completes  # completed, then deleted
        assert f"dumps/app-5/{MANIFEST}" not in kit.server.completes  # the manifest comes last
        assert keys_under(kit, "dumps/app-5") == [] and kit.leftovers() == []
        kit.server.reset_faults()

    # list(): one level, objects and prefixes ("folders"), sorted by key, keys whole.
    store.put("dumps/2025/old.json", b"old")
    listed = list(store.list("dumps/"))
    folders = [("dumps/2025/", True), ("dumps/app-1/", True), ("dumps/app-4/", True)]
    assert [(e.key, e.prefix) for e in listed] == sorted([(k, False) for k in objects] + folders)
    by_key = {e.key: e for e in listed}
    assert by_key["dumps/big.json.zst"].size == len(BIG) and by_key["dumps/big.json.zst"].modified
    assert [e.key for e in store.list("dumps/s")] == ["dumps/small.json"]  # a name prefix
    assert [e.key for e in store.list("")] == ["dumps/"]
    assert list(store.list("nothing-here/")) == []
    assert store.exists("dumps/app-1") and store.exists("dumps/app-1/") and store.exists("dumps/small.json")
    assert not store.exists("dumps/app-") and not store.exists("dumps/small")

    # put() and read_small().
    store.put("dumps/small.json.sha256", b"0" * 64 + b"  small.json\n")
    assert store.read_small("dumps/small.json.sha256") == b"0" * 64 + b"  small.json\n"
    assert store.read_small("dumps/big.json.zst", 100) == BIG[:100]
    assert store.read_small("dumps/empty.json", 100) == b""
    assert store.read_small("dumps/missing.json") is None

    # open() of a missing key.
    with pytest.raises(NotFoundError) as exc:
        store.open("dumps/missing.json")
    one_line_error(kit, exc, "dumps/missing.json", "does not exist")

    # delete(): objects, a prefix with everything under it; keys already gone are no error.
    store.delete(["dumps/small.json", "dumps/small.json.sha256", "dumps/app-1/", "dumps/gone.json"])
    assert keys_under(kit, "dumps/small") == [] and keys_under(kit, "dumps/app-1") == []
    assert store.exists("dumps/big.json.zst") and store.exists("dumps/2025/old.json")
    with pytest.raises(UsageError):
        store.delete([""])

    # url(): how people see a key, never a credential.
    url = store.url("dumps/big.json.zst")
    assert url.endswith("dumps/big.json.zst") and not any(s in url for s in SECRETS)
    assert {"file": "/", "s3": "s3://", "memory": "memory://"}[kit.name] in url

    # check_writable() where the folder or the bucket is missing: one line, before any byte.
    if kit.missing is not None:
        missing, key = open_store(kit.missing, s3_endpoint=kit.server.endpoint if kit.server else None)
        with pytest.raises((OutputError, NotFoundError)) as exc:
            missing.check_writable(key)
        one_line_error(kit, exc, "does not exist")
        with pytest.raises(NotFoundError) as exc:
            list(missing.list(""))
        one_line_error(kit, exc, "does not exist")
    store.check_writable("dumps/new.json")
    assert kit.leftovers() == []


@pytest.mark.parametrize("kit", ["s3"], indirect=True)
def test_s3_manifest_completed_but_its_answer_lost_is_committed(kit: Kit) -> None:
    """A lost answer to the manifest's completion: the object is there (its batch's metadata
    says it is ours), so the batch is committed, not rolled back under a reader's eyes."""
    assert kit.server is not None
    kit.server.lose_complete = f"app/{MANIFEST}"
    batch = kit.store.batch("app")
    for name, data in (("t.jsonl", b"row\n"), (MANIFEST, b'{"format": "sqlsnap"}')):
        upload = batch.create(name)
        write(upload, data)
        upload.commit()
    batch.commit()
    assert kit.server.completes.count(f"app/{MANIFEST}") == 2  # botocore retried once
    assert kit.keys() == ["app/metadata.json", "app/t.jsonl"] and kit.leftovers() == []


@pytest.mark.parametrize("kit", ["s3"], indirect=True)
def test_s3_failed_manifest_completion_removes_the_tables(kit: Kit) -> None:
    assert kit.server is not None
    kit.server.fail_complete = f"app/{MANIFEST}"
    batch = kit.store.batch("app")
    for name in ("t.jsonl", MANIFEST):
        upload = batch.create(name)
        write(upload, b"x")
        upload.commit()
    with pytest.raises(OutputError, match="access denied"):
        batch.commit()
    assert kit.keys() == [] and kit.leftovers() == []


def test_a_reader_never_sees_half_an_object(kit: Kit) -> None:
    """While an object is replaced, a reader sees the old one or the new one, whole."""
    store = kit.store
    store.put("x.json", b"a" * 1000)
    stop = threading.Event()
    bad: list[bytes | None] = []

    def reader() -> None:
        while not stop.is_set():
            data = store.read_small("x.json")
            if data is None or len(set(data)) != 1 or len(data) != 1000:
                bad.append(data)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for letter in b"bcd":
            upload = store.create("x.json")
            write(upload, bytes([letter]) * 1000)
            upload.commit()
    finally:
        stop.set()
        thread.join()
    assert read_all(store.open("x.json")) == b"d" * 1000
    assert bad == []


# -- the registry, and the stores it makes --------------------------------------------------

@pytest.mark.parametrize(("location", "scheme", "key"), [
    ("-", "stdout", ""),
    ("s3://backups/dumps/app.json", "s3", "dumps/app.json"),
    ("s3://backups/dumps/", "s3", "dumps/"),
    ("s3://backups", "s3", ""),
    ("memory://tests/dumps/app.json", "memory", "dumps/app.json"),
    ("dumps/app.json", "file", "app.json"),
    ("app.json", "file", "app.json"),
    ("dumps/", "file", ""),
    ("file:///srv/dumps/app.json", "file", "app.json"),
])
def test_open_store(location: str, scheme: str, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if scheme == "s3":
        pytest.importorskip("boto3")
        aws_env(monkeypatch)
    store, found = open_store(location)
    assert (store.scheme, found) == (scheme, key)
    if scheme == "file":
        shown = {"dumps/app.json": "dumps/app.json", "app.json": "./app.json", "dumps/": "dumps",
                 "file:///srv/dumps/app.json": "/srv/dumps/app.json"}
        assert store.url(key) == shown[location]


def test_a_plain_path_naming_an_existing_folder_is_that_folder(tmp_path: Path) -> None:
    store, key = open_store(str(tmp_path))
    assert key == "" and store.url("a.json") == str(tmp_path / "a.json")
    with pytest.raises(OutputError, match="is an existing folder"):
        store.check_writable(key)  # -o FOLDER for a document, or for JSON Lines that exist
    with pytest.raises(OutputError, match="is an existing folder; give a new name"):
        store.create(key)  # the name is taken (exit 6, as before the stores)
    with pytest.raises(OutputError, match="already exists"):
        store.batch(key)
    # A new folder given with a trailing slash is made by a batch.
    store, key = open_store(f"{tmp_path}/new/")
    batch = store.batch(key)
    upload = batch.create(MANIFEST)
    upload.write(b"{}")
    upload.commit()
    assert not (tmp_path / "new").exists()
    batch.commit()
    assert (tmp_path / "new" / MANIFEST).read_bytes() == b"{}"


def test_file_keys_cannot_leave_the_root(tmp_path: Path) -> None:
    store, _ = open_store(f"{tmp_path}/")
    for key in ("../x.json", "/etc/passwd", "a/../../x", "a//b"):
        with pytest.raises(UsageError, match="is not a key"):
            store.create(key)


def test_unknown_scheme_lists_the_schemes() -> None:
    with pytest.raises(UsageError) as exc:
        open_store("ftp://host/dumps/app.json")
    assert str(exc.value) == ("unsupported location 'ftp://'; use a path, '-' (standard output), "
                              "file:///path, s3://bucket/key or memory://name/key")
    with pytest.raises(UsageError, match="memory://NAME/key"):
        open_store("memory:///x")


def test_memory_stores_are_process_wide_by_name() -> None:
    name = f"shared-{uuid.uuid4().hex[:8]}"
    first, _ = open_store(f"memory://{name}/a")
    first.put("a", b"1")
    second, key = open_store(f"memory://{name}/a")
    assert second is first and second.read_small(key) == b"1"
    other, _ = open_store(f"memory://{name}-other/a")
    assert other.read_small("a") is None


def test_stdout_writes_and_refuses_everything_else(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    store, key = open_store("-")
    upload = store.create(key)
    upload.write(b"snapshot bytes")
    upload.commit()
    assert upload.bytes == 14 and store.url(key) == "-"
    store.check_writable(key)
    assert capsysbinary.readouterr().out == b"snapshot bytes"
    refusals: list[Callable[[], Any]] = [
        lambda: store.batch("folder"), lambda: store.put("x.sha256", b""), lambda: store.open("x"),
        lambda: store.read_small("x"), lambda: store.exists("x"), lambda: store.list(""),
        lambda: store.delete(["x"]),
    ]
    for refuse in refusals:
        with pytest.raises(UsageError) as exc:
            refuse()
        message = str(exc.value)
        assert message.startswith("standard output (-) is write-only and cannot ") and "\n" not in message
        assert "give " in message  # names the fix
    with pytest.raises(UsageError, match="-o FOLDER"):
        store.batch("folder")

