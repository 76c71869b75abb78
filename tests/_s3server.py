"""A real S3-compatible HTTP server on loopback for the tests: moto's S3 in server mode
(the same WSGI app as ``moto.server.ThreadedMotoServer``), with two switches in front of
it to make an upload fail the way real ones do:

- ``deny_parts_after = N``: UploadPart requests after the N-th answer 403 AccessDenied
  (as a bucket policy or an expired token would); the server stays up, so a test can check
  that nothing was left at the key and no multipart upload stayed open.
- ``die_at_part = N``: the process serving it exits (``os._exit``) when the N-th UploadPart
  arrives, so the kernel resets every connection and the port refuses new ones: a crash
  mid-upload. Only meaningful for a server in its own process: ``S3Process``. Its state
  dies with it.

``S3Proxy`` in front of an ``S3Process`` is a server that stops mid-upload and starts again
with its state (see its docstring).

moto keeps its data in memory: a server in this process started again sees the same
buckets. ``mock_aws()`` is not used: s3fs and aiobotocore do not work under it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import struct
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
        return client_for(self.endpoint)


def client_for(endpoint: str) -> Any:
    """A boto3 client of the tests (one attempt per request) on ``endpoint``."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
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
    """The same server in a child process, which dies at the ``die_at_part``-th UploadPart
    (never when None)."""

    def __init__(self, die_at_part: int | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.port), str(die_at_part or 0)],
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

    def client(self) -> Any:
        """A client talking to the process directly (not through a proxy in front of it)."""
        return client_for(self.endpoint)


#: A request line (``PUT /bucket/key?partNumber=2&uploadId=... HTTP/1.1``) in a client's bytes.
_REQUEST_LINE = re.compile(rb"(GET|PUT|POST|DELETE|HEAD) (/\S*) HTTP/1\.[01]\r\n")


class S3Proxy:
    """A TCP proxy on loopback that owns the endpoint's port in front of a long-lived S3 server
    (an ``S3Process``), and can stop and start again the way a server process does.

    ``stop()`` closes the listening socket, so new connections are refused, and resets every
    open connection (SO_LINGER 0: an RST, what the kernel sends for a killed process that had
    unread data), so a request in flight fails on the client's side as on a crash. ``start()``
    listens again on the same port. The server behind keeps its buckets and unfinished uploads
    meanwhile, like a store with its data on disk (MinIO, Ceph, S3): moto alone cannot do that,
    as it keeps its state in the memory of its process.

    ``stop_at_part = N``: stop as soon as the request line of UploadPart number N has gone
    through (the server has the start of the part, the client is sending its body);
    ``restart_after``: start again that many seconds after stopping. ``requests`` lists
    ``(generation, request line)`` as seen: generation 1 before the first stop, 2 after the
    first start again, ...
    """

    def __init__(self, upstream_port: int, *, stop_at_part: int | None = None,
                 restart_after: float | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.upstream_port = upstream_port
        self.stop_at_part = stop_at_part
        self.restart_after = restart_after
        self.stopped = threading.Event()  # set at the first stop
        self.stopped_at: float | None = None  # time.monotonic() of the first stop
        self.restarted_at: float | None = None
        self.generation = 0
        self.requests: list[tuple[int, str]] = []
        self._part = re.compile(rb"[?&]partNumber=%d(?:&|\s)" % (stop_at_part or 0))
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._clients: set[socket.socket] = set()
        self._upstreams: set[socket.socket] = set()
        self._timer: threading.Timer | None = None
        self.start()

    def start(self) -> S3Proxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
            self.generation += 1
            if self.generation > 1 and self.restarted_at is None:
                self.restarted_at = time.monotonic()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            clients, self._clients = self._clients, set()
            upstreams, self._upstreams = self._upstreams, set()
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (close() alone does not)
        listener.close()
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RD)  # wakes the pump in recv(); sends nothing
            sock.close()  # with SO_LINGER 0: an RST to the client
        for sock in upstreams:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
            self.stopped.set()
            if self.restart_after is not None:
                self._timer = threading.Timer(self.restart_after, self.start)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.stop()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    upstream.close()
                    return
                self._clients.add(client)
                self._upstreams.add(upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        tail = b""  # the end of the previous chunk: a request line may straddle two
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if from_client:
                    window = tail + data
                    for match in _REQUEST_LINE.finditer(window):
                        if match.end() > len(tail):  # not already counted with the previous chunk
                            self.requests.append((self.generation, match.group(0).decode().strip()))
                    tail = window[-300:]
                    if self.stop_at_part and self.stopped_at is None and self._part.search(window):
                        dst.sendall(data)
                        self.stop()
                        return
                dst.sendall(data)
        except OSError:
            return


if __name__ == "__main__":
    server = S3Server(int(sys.argv[1]))
    server.die_at_part = int(sys.argv[2]) or None
    server.start()
    assert server._thread is not None
    server._thread.join()
