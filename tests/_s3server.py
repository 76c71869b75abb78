"""A real S3-compatible HTTP server on loopback for the tests: moto's S3 in server mode
(the same WSGI app as ``moto.server.ThreadedMotoServer``), with two switches in front of
it to make an upload fail the way real ones do:

- ``deny_parts_after = N``: UploadPart requests after the N-th answer 403 AccessDenied
  (as a bucket policy or an expired token would); the server stays up, so a test can check
  that nothing was left at the key and no multipart upload stayed open.
- ``die_at_part = N``: the process serving it exits (``os._exit``) when the N-th UploadPart
  arrives, so the kernel resets every connection and the port refuses new ones: a crash
  mid-upload. Only meaningful for a server in its own process: ``S3Process``.

moto keeps its data in memory: a server in this process started again sees the same
buckets. ``mock_aws()`` is not used: s3fs and aiobotocore do not work under it
(ECOSYSTEM.md).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

#: Credentials for the tests only: moto accepts any.
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIASQLSNAPTEST00000",
    "AWS_SECRET_ACCESS_KEY": "sqlsnap-test-secret-DO-NOT-PRINT",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Two attempts: the retry path runs, and a dead server fails in about a second.
    "AWS_MAX_ATTEMPTS": "2",
    "AWS_RETRY_MODE": "standard",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    # No instance-metadata lookups (a second's timeout each) when credentials are missing.
    "AWS_EC2_METADATA_DISABLED": "true",
}
_UNSET = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN")

_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
           b"<Message>Access Denied</Message></Error>")


def aws_env(monkeypatch: Any) -> None:
    for key, value in TEST_ENV.items():
        monkeypatch.setenv(key, value)
    for key in _UNSET:
        monkeypatch.delenv(key, raising=False)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.deny_parts_after: int | None = None
        self.die_at_part: int | None = None
        self.on_part: Any = None
        self.parts_seen = 0
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> S3Server:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", self.port, self._middleware(app), threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def reset_faults(self) -> None:
        self.deny_parts_after = self.die_at_part = self.on_part = None
        self.parts_seen = 0

    def _middleware(self, app: Any) -> Any:
        def handle(environ: dict[str, Any], start_response: Any) -> Any:
            query = environ.get("QUERY_STRING", "")
            if environ["REQUEST_METHOD"] == "PUT" and "partNumber=" in query and "uploadId=" in query:
                with self._lock:
                    self.parts_seen += 1
                    n = self.parts_seen
                if self.on_part:
                    self.on_part(n)
                if self.die_at_part is not None and n >= self.die_at_part:
                    os._exit(17)
                if self.deny_parts_after is not None and n > self.deny_parts_after:
                    _drain(environ)
                    start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                                     ("Content-Length", str(len(_DENIED)))])
                    return [_DENIED]
            return app(environ, start_response)

        return handle

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()
            server.server_close()

    def restart(self) -> S3Server:
        self.stop()
        self.reset_faults()
        return self.start()

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))


def _drain(environ: dict[str, Any]) -> None:
    stream = environ.get("wsgi.input")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    while stream is not None and length > 0:
        chunk = stream.read(min(length, 1 << 20))
        if not chunk:
            break
        length -= len(chunk)


class S3Process:
    """The same server in a child process, which dies at the ``die_at_part``-th UploadPart."""

    def __init__(self, die_at_part: int) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.port), str(die_at_part)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.closing(socket.socket()) as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the S3 test server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


if __name__ == "__main__":
    server = S3Server(int(sys.argv[1]))
    server.die_at_part = int(sys.argv[2])
    server.start()
    assert server._thread is not None
    server._thread.join()
