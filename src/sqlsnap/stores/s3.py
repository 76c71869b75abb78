"""S3-compatible object storage (AWS S3, MinIO, Cloudflare R2, Supabase Storage, ...).

Writing uses boto3's low-level multipart API rather than ``upload_fileobj`` so that this
module owns every step: parts are buffered in memory (never on disk), uploaded by a small
thread pool while the next part fills, and an upload that does not finish is aborted with
``AbortMultipartUpload``, so that nothing ever appears at the key unless it is complete
(S3 makes an object visible only on ``CompleteMultipartUpload``). The abort is retried while
the store cannot be reached (``ABORT_RETRY_SECONDS``); when it still fails, the error says
which upload is left and the command that removes it.

Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, ``~/.aws/credentials``, instance roles...). Another provider is reached
with ``endpoint_url`` (``--s3-endpoint``) or ``AWS_ENDPOINT_URL(_S3)``; with a custom
endpoint, path-style addressing is used (MinIO and Supabase need it; R2 accepts it).

botocore errors are translated here, at the boundary, into one-line :class:`SnapError`
messages that name the fix and never carry a credential.

:class:`S3Store` is the ``s3`` store (one bucket; keys are object keys). Its batch
(:class:`S3Batch`) uploads every object's parts but leaves each multipart upload open until
the batch commits, then completes them all, the manifest last; S3 has no atomic commit of
several objects, so during that commit a reader can see some of the objects without the
manifest, and a failure deletes what was completed and aborts the rest.
"""

from __future__ import annotations

import builtins
import os
import secrets
import shlex
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ..errors import (
    Interrupted,
    MissingDriverError,
    NotFoundError,
    OutputError,
    OutputUnavailable,
    SnapError,
    UsageError,
    os_error,
)
from ..format import MANIFEST
from ..urls import mask
from .base import Entry, Store, TrackedBatch, Upload

#: Parts are at least this big. S3 wants >= 5 MiB for every part but the last (moto enforces
#: it: EntityTooSmall) and at most 10,000 parts; 8 MiB is what the AWS CLI uses.
PART_BYTES = 8 << 20
#: Parts uploading while the next one fills: memory is about (PARTS_IN_FLIGHT + 1) parts.
#: Two overlap the network with compression and encryption; more did not help on loopback.
PARTS_IN_FLIGHT = 2
#: S3's hard limit on parts in one upload.
MAX_PARTS = 10_000
#: Every part but the last has exactly the same size up to this many parts (Cloudflare R2
#: requires equal parts: 5,000 x 8 MiB = 40 GiB); beyond, parts grow by PART_BYTES every
#: PART_GROWTH_EVERY parts so that S3's 10,000 parts hold about 196 GiB.
EQUAL_PARTS = 5000
PART_GROWTH_EVERY = 1000
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 120
#: An upload that fails because the store went away (a crash, a restart, a network blip) is
#: aborted as soon as the store answers again, for up to this many seconds: a MinIO or Ceph
#: RGW restart takes a few seconds to ~20 s, so 30 s rides out a restart, not an outage.
#: Ctrl-C (or SIGTERM) stops the retries at once. Tests lower it.
ABORT_RETRY_SECONDS = 30.0
#: Waits between attempts: 0.5, 1, 2, 4, 8, 8, ... s (the last one cut at the deadline), i.e.
#: 9 attempts in 30 s; soon after a blip, and not hammering a store that is starting up.
ABORT_FIRST_WAIT = 0.5
ABORT_MAX_WAIT = 8.0
#: Each abort attempt is one request (no botocore retries) with this connect and read timeout,
#: so the retries end by ABORT_RETRY_SECONDS plus one attempt (at most 2 x 5 s) even against
#: a host that drops packets (botocore's own 3 attempts x 10 s connect timeout would not).
ABORT_ATTEMPT_TIMEOUT = 5.0
INSTALL_HINT = "pip install 'sqlsnap[s3]'  (installs boto3)"
#: CompleteMultipartUpload requests in flight when a batch commits: a JSON Lines snapshot has
#: one object per table, and each completion is a round trip (tens of ms on AWS, more while
#: S3 assembles large objects), so 300 tables one after the other would take seconds.
COMPLETES_IN_FLIGHT = 8
#: User metadata (``x-amz-meta-sqlsnap-batch``) naming the batch an object was written by:
#: tells whether a manifest whose completion answer was lost did appear, and lets an operator
#: find what an interrupted batch left.
BATCH_METADATA = "sqlsnap-batch"

#: The IAM permission each action needs, named in "access denied" messages.
_PERMISSIONS = {"upload": "s3:PutObject and s3:AbortMultipartUpload", "write": "s3:PutObject",
                "complete": "s3:PutObject", "read": "s3:GetObject", "list": "s3:ListBucket",
                "delete": "s3:DeleteObject", "use": "s3:ListBucket"}
#: Error codes of a store that may answer later (S3's and common S3-compatible ones).
_UNAVAILABLE = frozenset({"SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError", "Throttling"})
_CONTENT_TYPES = {".json": "application/json", ".jsonl": "application/x-ndjson", ".zst": "application/zstd",
                  ".gz": "application/gzip", ".sha256": "text/plain; charset=utf-8"}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_s3(location: str) -> bool:
    return location[:5].lower() == "s3://"


def parse_s3_url(url: str, *, need_key: bool = True) -> S3Location:
    """``s3://bucket/key``; with ``need_key=False`` the key may be empty (a prefix)."""
    if not is_s3(url):
        raise UsageError(f"'{mask(url)}' is not an S3 URL; use s3://bucket/path/name.json.zst")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise UsageError(f"'{mask(url)}' has no bucket; use s3://bucket/path/name.json.zst")
    if need_key and (not key or key.endswith("/")):
        raise UsageError(f"'{mask(url)}' names no object; give the file name too, "
                         f"e.g. s3://{bucket}/{key}{{database}}-{{timestamp}}.json.zst")
    return S3Location(bucket, key)


def content_type(key: str) -> str:
    return _CONTENT_TYPES.get(os.path.splitext(key)[1].lower(), "application/octet-stream")


def endpoint_from_env() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def make_client(endpoint_url: str | None = None, *, attempts: int | None = None,
                timeout: float | None = None) -> Any:
    """A boto3 S3 client; custom endpoints get path-style addressing. ``attempts`` and
    ``timeout`` (connect and read) override botocore's retries and our timeouts."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise MissingDriverError(f"S3 support is not installed ({exc.name}); install it with: "
                                 f"{INSTALL_HINT}", dialect="s3") from None
    endpoint = endpoint_url or endpoint_from_env()
    options: dict[str, Any] = {"connect_timeout": timeout or CONNECT_TIMEOUT,
                               "read_timeout": timeout or READ_TIMEOUT}
    if attempts is not None:
        options["retries"] = {"total_max_attempts": attempts}  # wins over AWS_MAX_ATTEMPTS
    if endpoint:
        options["s3"] = {"addressing_style": "path"}
        # botocore >= 1.36 sends CRC32 checksums by default, which several S3-compatible
        # stores reject or mishandle; only send them where the operation requires one.
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    try:
        return boto3.session.Session().client("s3", endpoint_url=endpoint, config=Config(**options))
    except Exception as exc:  # noqa: BLE001 - botocore raises many kinds for bad configuration
        raise translate(exc, "connect to", endpoint or "S3", endpoint=endpoint) from None


def translate(exc: BaseException, action: str, what: str, *, endpoint: str | None = None,
              writing: bool = False) -> SnapError:
    """A botocore/boto3 error as a one-line sqlsnap error. ``action`` reads "... to <action> <what>"."""
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - only called after boto3 imported
        return OutputError(f"cannot {action} {what}: {type(exc).__name__}")
    where = mask(endpoint) if endpoint else "the S3 endpoint"
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",):
            return NotFoundError(f"bucket of {what} does not exist at {where}; create it first "
                                 "(aws s3 mb s3://BUCKET) or check the name", path=what)
        if code in ("NoSuchKey", "NotFound", "404") or (status == 404 and not writing):
            return NotFoundError(f"{what} does not exist at {where}", path=what)
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                    "TokenRefreshRequired"):
            return OutputError(f"{where} refused the credentials ({code}) when trying to {action} {what}; "
                               "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE", path=what)
        if code in ("AccessDenied", "403", "AllAccessDisabled") or status == 403:
            return OutputError(f"access denied to {action} {what} ({code}); the credentials need "
                               f"{_PERMISSIONS.get(action.split()[0], 's3:PutObject')} on it", path=what)
        message = " ".join(str(error.get("Message") or "").split())[:200]
        # A store restarting, overloaded or throttling: trying again later may succeed.
        unavailable = status in (500, 502, 503, 504) or code in _UNAVAILABLE
        return (OutputUnavailable if unavailable else OutputError)(
            f"cannot {action} {what}: {where} answered {code}" + (f" ({mask(message)})" if message else ""),
            path=what)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.CredentialRetrievalError):
        return OutputError(f"no usable AWS credentials to {action} {what}; set AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); see docs/destinations.md", path=what)
    if isinstance(exc, bx.ParamValidationError):
        return UsageError(f"invalid S3 request to {action} {what}: "
                          + " ".join(str(exc).split())[:200], path=what)
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ProxyConnectionError):
        return OutputUnavailable(f"cannot reach {where} to {action} {what} (connection failed); check that "
                                 "the server is up and --s3-endpoint / AWS_ENDPOINT_URL", path=what)
    if isinstance(exc, bx.SSLError):
        return OutputError(f"TLS error talking to {where} to {action} {what}; check the endpoint's "
                           "certificate (AWS_CA_BUNDLE)", path=what)
    if isinstance(exc, bx.ConnectionClosedError | bx.ReadTimeoutError | bx.HTTPClientError
                  | bx.IncompleteReadError | bx.ConnectionError):
        return OutputUnavailable(f"the connection to {where} failed while trying to {action} {what} "
                                 f"({type(exc).__name__}); try again", path=what)
    if isinstance(exc, bx.BotoCoreError | ValueError):
        return OutputError(f"cannot {action} {what}: " + mask(" ".join(str(exc).split()))[:200], path=what)
    return OutputError(f"cannot {action} {what}: {type(exc).__name__}", path=what)


def check_bucket(client: Any, bucket: str, final: str, endpoint: str | None) -> None:
    """Fail when ``bucket`` is missing or unreachable (``final``: what is being written)."""
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001
        err = translate(exc, "use the bucket of", final, endpoint=endpoint)
        if isinstance(err, NotFoundError):
            raise NotFoundError(f"bucket '{bucket}' does not exist at "
                                f"{mask(endpoint) if endpoint else 'AWS'}; create it first "
                                "or check the name", path=final) from None
        # Write-only credentials may lack s3:ListBucket (HeadBucket answers 403): go on and
        # let the upload itself say whether writing is allowed.
        if "access denied" not in str(err):
            raise err from None


class _PartWriter:
    """The sink's ``fh``: collects writes into parts and hands full parts to the uploader."""

    def __init__(self, sink: S3Sink) -> None:
        self._sink = sink

    def write(self, data: bytes) -> int:
        self._sink._write(data)
        return len(data)

    def flush(self) -> None:
        pass


class S3Sink(Upload):
    """A multipart upload: an :class:`Upload`, and the older sink interface (``fh``,
    ``commit()``, ``abort()``).

    The upload starts with the first full part; a document smaller than one part is sent
    with a single PutObject at commit. Thread-safe for one writer thread at a time.

    ``deferred`` (in an :class:`S3Batch`): ``commit()`` sends the last part (an object smaller
    than one part is one part) and waits for all, but leaves the upload open; the batch
    then calls :meth:`complete`. ``metadata`` is stored with the object (user metadata).
    """

    def __init__(self, client: Any, location: S3Location, *, endpoint: str | None = None,
                 deferred: bool = False, metadata: dict[str, str] | None = None) -> None:
        self.client = client
        self.location = location
        self.endpoint = endpoint
        self.final = location.url
        self.fh = _PartWriter(self)
        self.deferred = deferred
        self._metadata = metadata or {}
        #: Deferred, once committed: the parts to complete with ([] for an empty object, which
        #: is put whole at completion: S3-compatible stores differ on empty parts).
        self.parts: list[dict[str, Any]] | None = None
        self.upload_id: str | None = None
        self._buffer = bytearray()
        self._parts: list[Future[dict[str, Any]]] = []
        self._slots = threading.BoundedSemaphore(PARTS_IN_FLIGHT)
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        #: The first failed part: later parts are not sent, the writer raises it at its next part.
        self._failure: SnapError | None = None

    # -- writing -------------------------------------------------------------------------
    def _part_size(self) -> int:
        return PART_BYTES * (1 + max(0, len(self._parts) - EQUAL_PARTS) // PART_GROWTH_EVERY)

    def write(self, data: bytes | memoryview, /) -> int:
        self._write(data)
        return data.nbytes if isinstance(data, memoryview) else len(data)

    def _write(self, data: bytes | memoryview) -> None:
        if self._closed:
            raise OutputError(f"the upload to {self.final} was already ended", path=self.final)
        self._buffer += data
        self.bytes += data.nbytes if isinstance(data, memoryview) else len(data)
        try:
            while len(self._buffer) >= self._part_size():
                self._send_part(self._part_size())
        except SnapError as exc:
            # Abort at once, so the message can say whether anything was left behind; but only
            # on the main thread, the one Ctrl-C reaches, so that it can stop the abort's
            # retries. An encrypted export writes here from age's thread: its error reaches the
            # main thread, which then calls abort().
            if threading.current_thread() is threading.main_thread():
                raise self._with_abort_note(exc) from None
            raise

    def _with_abort_note(self, exc: SnapError) -> SnapError:
        return self._abort_upload(exc) or exc

    def _error(self, exc: BaseException, action: str = "upload") -> SnapError:
        return translate(exc, action, self.final, endpoint=self.endpoint, writing=True)

    def _raise_failed_part(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _start(self) -> None:
        try:
            created = self.client.create_multipart_upload(
                Bucket=self.location.bucket, Key=self.location.key,
                ContentType=content_type(self.location.key), Metadata=self._metadata)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None
        self.upload_id = created["UploadId"]
        self._pool = ThreadPoolExecutor(max_workers=PARTS_IN_FLIGHT, thread_name_prefix="sqlsnap-s3")

    def _send_part(self, size: int | None = None) -> None:
        """Send the first ``size`` bytes of the buffer as the next part (all of it if None)."""
        if self.upload_id is None:
            if self._closed:  # aborted meanwhile (by the main thread): start no new upload
                raise OutputError(f"the upload to {self.final} was already ended", path=self.final)
            self._start()
        assert self._pool is not None
        self._raise_failed_part()
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise OutputError(f"{self.final} would need more than {MAX_PARTS} parts; the export is "
                              "too large for one S3 object", path=self.final)
        body, self._buffer = self._buffer, bytearray()
        if size is not None and len(body) > size:
            # Parts of exactly the same size: the rest (less than one write) starts the next one.
            self._buffer = body[size:]
            del body[size:]
        # Wait for a free slot: memory stays at PARTS_IN_FLIGHT parts plus the one filling.
        self._slots.acquire()
        if self._failure is not None:
            self._slots.release()
            raise self._failure
        try:
            self._parts.append(self._pool.submit(self._upload_part, self.upload_id, number, body))
        except BaseException:
            self._slots.release()
            raise

    def _upload_part(self, upload_id: str | None, number: int, body: bytearray) -> dict[str, Any]:
        try:
            if self._failure is not None:
                raise self._failure
            answer = self.client.upload_part(
                Bucket=self.location.bucket, Key=self.location.key, UploadId=upload_id,
                PartNumber=number, Body=body)
            return {"PartNumber": number, "ETag": answer["ETag"]}
        except SnapError:
            raise
        except Exception as exc:  # noqa: BLE001
            error = self._error(exc)
            if self._failure is None:
                self._failure = error
            raise error from None
        finally:
            self._slots.release()

    # -- ending --------------------------------------------------------------------------
    def commit(self) -> None:
        """Send what is left and make the object appear (deferred: leave it to
        :meth:`complete`); aborts the upload on failure."""
        if self._closed:
            raise OutputError(f"the upload to {self.final} was already ended", path=self.final)
        self._closed = True
        try:
            if self.upload_id is None and self.deferred and not self._buffer:
                self.parts = []
                self.state = "committed"
                return
            if self.upload_id is None and not self.deferred:
                self._put(bytes(self._buffer))
                self._buffer = bytearray()
                self.state = "committed"
                return
            if self.upload_id is None:  # deferred, less than one part: it is the one part
                self._start()
            if self._buffer:
                self._send_part()
            wait(self._parts)
            self._raise_failed_part()
            parts = [fut.result() for fut in self._parts]
            if self.deferred:
                self.parts = parts
                self.state = "committed"
                return
            self._complete(parts)
            self.state = "committed"
        except SnapError as exc:
            raise self._with_abort_note(exc) from None
        except BaseException:
            self.abort()
            raise
        finally:
            self._shutdown()

    def _put(self, body: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.location.bucket, Key=self.location.key, Body=body,
                                   ContentType=content_type(self.location.key), Metadata=self._metadata)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None

    def _complete(self, parts: list[dict[str, Any]]) -> None:
        try:
            self.client.complete_multipart_upload(
                Bucket=self.location.bucket, Key=self.location.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": parts})
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "complete the upload of") from None
        self.upload_id = None

    def complete(self) -> None:
        """(Deferred, after ``commit()``) make the object visible; raises the translated error
        and leaves the upload open on failure: the batch decides what to remove."""
        if self.parts is None:
            raise OutputError(f"the upload to {self.final} was not finished", path=self.final)
        if not self.parts:  # nothing was written: no multipart upload was started
            self._put(b"")
        elif self.upload_id is not None:  # (None: already completed)
            self._complete(self.parts)

    def abort(self) -> None:
        """Abandon the upload so that nothing is left at the key.

        Called from the exporter's ``except`` blocks, which drop what it returns: so when the
        upload cannot be removed (the store stays unreachable for ABORT_RETRY_SECONDS, or
        Ctrl-C stops the retries), this raises the error being handled with a note naming the
        upload left behind and the command that removes it (an OutputError if none is)."""
        err = self._abort_upload(sys.exc_info()[1])
        if err is not None:
            raise err from None

    def _abort_upload(self, cause: BaseException | None, *,
                      deadline: float | None = None) -> SnapError | None:
        """Stop the parts and abort the upload, retrying while the store cannot be reached
        (until ``deadline``, a ``time.monotonic()``, default ABORT_RETRY_SECONDS from now).

        Returns None when nothing is left behind, else the error to raise instead of ``cause``:
        ``cause`` with a note saying what is left and how to remove it."""
        self._closed = True
        self._buffer = bytearray()
        if self.state != "committed" or self.deferred:  # a completed object stays: abort is late
            self.state = "aborted"
        # Taken first: a later call (the exporter's, after this one raised) has nothing to do.
        upload_id, self.upload_id = self.upload_id, None
        attempts, started = 0, time.monotonic()
        try:
            if self._pool is not None:
                # Parts still uploading could otherwise land after the abort (S3 docs).
                for fut in self._parts:
                    fut.cancel()
                self._pool.shutdown(wait=True)
            if upload_id is None:
                return None
            client = self._abort_client()
            if deadline is None:
                # From now, not from before the client was made: making a boto3 client took up to
                # a second on a busy machine, which left no time for a second attempt.
                started = time.monotonic()
                deadline = started + ABORT_RETRY_SECONDS
            delay = ABORT_FIRST_WAIT
            while True:
                attempts += 1
                try:
                    client.abort_multipart_upload(Bucket=self.location.bucket, Key=self.location.key,
                                                  UploadId=upload_id)
                    return None
                except Exception as exc:  # noqa: BLE001
                    code = _error_code(exc)
                    if code == "NoSuchUpload":
                        # Already gone: an earlier attempt went through but its answer was lost.
                        return None
                    if not self._worth_retrying(exc) or time.monotonic() >= deadline:
                        failure = code or type(exc).__name__
                        break
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, ABORT_MAX_WAIT)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop now, and say what is left
            if upload_id is None:
                raise
            return self._left_behind(cause, upload_id, "was left open (its abort was interrupted "
                                     + (f"after {_attempts(attempts)})" if attempts else "before it began)"),
                                     interrupted=True)
        tried = f"; {_attempts(attempts)} in {time.monotonic() - started:.0f} s" if attempts > 1 else ""
        return self._left_behind(cause, upload_id, f"could not be aborted ({failure}{tried})")

    def _abort_client(self) -> Any:
        """A client making one attempt per request with short timeouts, so that the retries of
        the abort keep to their deadline whatever AWS_MAX_ATTEMPTS says."""
        try:
            return make_client(self.endpoint, attempts=1, timeout=ABORT_ATTEMPT_TIMEOUT)
        except SnapError:  # pragma: no cover - the same configuration made self.client
            return self.client

    def _worth_retrying(self, exc: BaseException) -> bool:
        """The store could not be reached or is not serving yet (restarting, overloaded)."""
        return translate(exc, "abort", self.final, endpoint=self.endpoint).transient

    def _left_behind(self, cause: BaseException | None, upload_id: str, what: str, *,
                     interrupted: bool = False) -> SnapError | None:
        """``cause`` (the error that ended the export) with a note about the upload left open."""
        command = (f"aws s3api abort-multipart-upload --bucket {shlex.quote(self.location.bucket)} "
                   f"--key {shlex.quote(self.location.key)} --upload-id {shlex.quote(upload_id)}")
        if self.endpoint:
            command += f" --endpoint-url {shlex.quote(mask(self.endpoint))}"
        note = (f"the unfinished multipart upload {what}; remove it with: {command}  (or set a "
                "lifecycle rule AbortIncompleteMultipartUpload on the bucket)")
        return _noted(cause, note, self.final, interrupted=interrupted)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _noted(cause: BaseException | None, note: str, final: str, *,
           interrupted: bool = False) -> SnapError | None:
    """``cause`` (the error that ended the export) with ``note`` about what is left at ``final``;
    None when ``cause`` is not ours (a bug: the note is added to its traceback instead)."""
    err: SnapError
    if isinstance(cause, SnapError) and not isinstance(cause, Interrupted):
        # The same class: its exit code and its transience (a class, errors.Transient) stay.
        err = (Interrupted if interrupted else type(cause))(f"{cause.message}; {note}", **cause.fields)
    elif interrupted or isinstance(cause, KeyboardInterrupt | Interrupted):
        err = Interrupted(f"interrupted; the export was abandoned and nothing is at {final}, "
                          f"but {note}", path=final)
    elif isinstance(cause, OSError):
        err = OutputError(f"{os_error(cause, final).message}; {note}", path=final)
    elif cause is None:
        err = OutputError(f"{final}: {note}", path=final)
    else:
        cause.add_note(note)
        return None
    return err


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("" if n == 1 else "s")


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


# -- reading, listing, deleting (verify, decrypt, prune) ----------------------------------

class S3Store(Store):
    """The ``s3`` store: one bucket, keys are object keys."""

    scheme = "s3"

    def __init__(self, bucket: str, endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.endpoint = endpoint_url or endpoint_from_env()
        self.client = make_client(endpoint_url)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _error(self, exc: BaseException, action: str, key: str, *, writing: bool = False) -> SnapError:
        return translate(exc, action, self.url(key), endpoint=self.endpoint, writing=writing)

    def check_writable(self, key: str) -> None:
        check_bucket(self.client, self.bucket, self.url(key), self.endpoint)

    def check_object_name(self, key: str) -> None:
        parse_s3_url(self.url(key))  # says "names no object" with an example

    def create(self, key: str) -> S3Sink:
        return S3Sink(self.client, parse_s3_url(self.url(key)), endpoint=self.endpoint)

    def batch(self, prefix: str) -> S3Batch:
        return S3Batch(self, prefix.rstrip("/"))

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type(key))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "write", key, writing=True) from None

    def open(self, key: str) -> Any:
        """A streaming reader (``read(n)``) on the object."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "read", key) from None
        return _Body(body, self, key)

    def _read(self, key: str, n: int, **ranged: str) -> bytes | None:
        """Up to ``n`` bytes of the object, or None when it does not exist."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, **ranged)["Body"]
            data: bytes = body.read(n)
            body.close()
            return data
        except Exception as exc:  # noqa: BLE001
            if ranged and _error_code(exc) == "InvalidRange":
                return b""  # a range of an empty object
            err = self._error(exc, "read", key)
            if isinstance(err, NotFoundError):
                return None
            raise err from None

    def read_small(self, key: str, limit: int = 1 << 20) -> bytes | None:
        """The first ``limit`` bytes of the object, or None when it does not exist (a ranged
        GET: the server sends no more than asked)."""
        return self._read(key, limit, Range=f"bytes=0-{limit - 1}")

    def read_head(self, key: str, n: int) -> bytes:
        """The first ``n`` bytes of the object (b"" when it is gone)."""
        return self._read(key, n, Range=f"bytes=0-{n - 1}") or b""

    def exists(self, key: str) -> bool:
        if key and not key.endswith("/"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
                return True
            except Exception as exc:  # noqa: BLE001
                if not isinstance(self._error(exc, "read", key), NotFoundError):
                    raise self._error(exc, "read", key) from None
            key += "/"
        try:
            answer = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "list", key) from None
        return bool(answer.get("KeyCount") or answer.get("Contents"))

    def list(self, prefix: str = "") -> Iterator[Entry]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/")
            for page in pages:
                # Each page is in key order, objects and prefixes apart: merge them.
                found = [Entry(item["Key"], int(item.get("Size", 0)), item["LastModified"])
                         for item in page.get("Contents", ())]
                found += [Entry(item["Prefix"], prefix=True) for item in page.get("CommonPrefixes", ())]
                yield from sorted(found, key=lambda e: e.key)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "list", prefix) from None

    def _all_under(self, prefix: str) -> builtins.list[str]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            return [item["Key"] for page in pages for item in page.get("Contents", ())]
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "list", prefix) from None

    def delete(self, keys: Sequence[str]) -> None:
        every: list[str] = []
        for key in keys:
            if not key:
                raise UsageError(f"refusing to delete the whole bucket {self.url('')}; name what to delete",
                                 path=self.url(""))
            every += self._all_under(key) if key.endswith("/") else [key]
        for start in range(0, len(every), 1000):  # DeleteObjects takes at most 1000 keys
            batch = every[start:start + 1000]
            try:
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            except Exception as exc:  # noqa: BLE001
                raise self._error(exc, "delete from", batch[0], writing=True) from None
            failed = answer.get("Errors") or []
            if failed:
                first = failed[0]
                raise OutputError(f"cannot delete {self.url(first.get('Key', '?'))}: "
                                  f"{first.get('Code', '?')} ({len(failed)} objects not deleted)",
                                  path=self.url(first.get("Key", "")))


class S3Batch(TrackedBatch):
    """Objects under one prefix, each a multipart upload left open until :meth:`commit`.

    The commit completes the objects (COMPLETES_IN_FLIGHT at a time), then the manifest
    alone, last. S3 cannot make several objects appear at once: while it runs, a reader can
    see some table objects without the manifest; a snapshot is complete when its manifest is
    there. On any failure the commit deletes every object whose completion it sent (an answer
    lost on the way may hide a success), the manifest first, and aborts the other uploads; what
    cannot be removed is named in the error, with the command that removes it.
    """

    def __init__(self, store: S3Store, prefix: str) -> None:
        super().__init__(store.url(prefix + "/" if prefix else ""))
        self._store = store
        self._prefix = prefix
        self._url = self._where
        if store.exists(prefix):
            raise OutputError(f"{store.url(prefix)} already exists; remove it or choose another name "
                              "with -o", path=store.url(prefix))
        self._token = secrets.token_hex(8)
        #: Keys whose completion was sent: visible, or may be.
        self._sent: list[str] = []

    def _new(self, name: str) -> Upload:
        if not name or name.startswith("/") or name.endswith("/"):
            raise UsageError(f"'{name}' is not an object name in {self._url}", path=self._url)
        key = f"{self._prefix}/{name}" if self._prefix else name
        return S3Sink(self._store.client, S3Location(self._store.bucket, key), endpoint=self._store.endpoint,
                      deferred=True, metadata={BATCH_METADATA: self._token})

    def _publish(self, uploads: dict[str, Upload]) -> None:
        sinks = {n: u for n, u in uploads.items() if isinstance(u, S3Sink)}
        # Nothing of ours is visible yet: anything there now was written by someone else.
        if self._store.exists(self._prefix):
            raise OutputError(f"{self._store.url(self._prefix)} appeared while the batch was being "
                              "written; choose another name with -o", path=self._url)
        self._complete([u for n, u in sinks.items() if n != MANIFEST])
        if MANIFEST in sinks:
            self._complete([sinks[MANIFEST]])

    def _drop(self, uploads: builtins.list[Upload]) -> None:
        err = self._rollback(sys.exc_info()[1])
        if err is not None:
            raise err from None

    def _complete(self, uploads: list[S3Sink]) -> None:
        if not uploads:
            return
        with self._lock:
            self._sent += [u.location.key for u in uploads]
        if len(uploads) == 1:
            self._complete_one(uploads[0])
            return
        # Leaving the block waits for every completion sent, so that none lands after a rollback.
        with ThreadPoolExecutor(max_workers=COMPLETES_IN_FLIGHT, thread_name_prefix="sqlsnap-s3") as pool:
            futures = [pool.submit(self._complete_one, u) for u in uploads]
        for fut in futures:
            fut.result()

    def _complete_one(self, upload: S3Sink) -> None:
        try:
            upload.complete()
        except SnapError:
            if not self._landed(upload):
                raise

    def _landed(self, upload: S3Sink) -> bool:
        """Whether ``upload``'s object is there anyway (its completion's answer was lost)."""
        try:
            head = self._store.client.head_object(Bucket=self._store.bucket, Key=upload.location.key)
        except Exception:  # noqa: BLE001 - then it cannot be shown to be there
            return False
        return bool(head.get("Metadata", {}).get(BATCH_METADATA) == self._token
                    and head.get("ContentLength") == upload.bytes)

    def abort(self) -> None:
        """Remove whatever the batch wrote; like :meth:`S3Sink.abort`, raises the error being
        handled with a note when something cannot be removed."""
        with self._lock:
            if self._state in ("committed", "aborted"):
                return
        self._drop([])

    def _rollback(self, cause: BaseException | None) -> SnapError | None:
        with self._lock:
            self._state = "aborted"
            sent, self._sent = self._sent, []
            uploads = [u for u in self._uploads.values() if isinstance(u, S3Sink)]
        notes: list[str] = []
        if sent:
            # The manifest first: what may stay behind is then not a snapshot.
            manifest = f"{self._prefix}/{MANIFEST}" if self._prefix else MANIFEST
            try:
                self._store.delete(sorted(sent, key=lambda k: k != manifest))
            except SnapError as exc:
                command = f"aws s3 rm --recursive {shlex.quote(self._url)}"
                if self._store.endpoint:
                    command += f" --endpoint-url {shlex.quote(mask(self._store.endpoint))}"
                notes.append(f"objects of the unfinished batch may be left under {self._url} "
                             f"({exc.message}); remove them with: {command}")
        # One deadline for all: a store that cannot be reached is given ABORT_RETRY_SECONDS once.
        deadline = time.monotonic() + ABORT_RETRY_SECONDS
        pending = [u for u in uploads if u.upload_id is not None or u.state == "open"]
        interrupted = False
        for i, upload in enumerate(pending):
            err = upload._abort_upload(cause, deadline=deadline)
            if err is None:
                continue
            interrupted = isinstance(err, Interrupted) and not isinstance(cause, Interrupted)
            left = len(pending) - i
            if left == 1:
                return err if not notes else _noted(err, "; ".join(notes), self._url)
            # The store is out of reach (or Ctrl-C): the others would fail the same way.
            command = (f"aws s3api list-multipart-uploads --bucket {shlex.quote(self._store.bucket)} "
                       f"--prefix {shlex.quote(self._prefix)}")
            notes.append(f"{left} unfinished multipart uploads of the batch were left open; list them "
                         f"with: {command} and abort each (or set a lifecycle rule "
                         "AbortIncompleteMultipartUpload on the bucket)")
            break
        if not notes:
            return None
        return _noted(cause, "; ".join(notes), self._url, interrupted=interrupted)


class _Body:
    """``get_object``'s body with botocore errors translated on read."""

    def __init__(self, body: Any, store: S3Store, key: str) -> None:
        self._body = body
        self._store = store
        self._key = key

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._body.read(None if n is None or n < 0 else n)
            return data
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "read", self._store.url(self._key), endpoint=self._store.endpoint) from None

    def close(self) -> None:
        try:
            self._body.close()
        except Exception:  # noqa: BLE001 - closing a broken stream
            pass
