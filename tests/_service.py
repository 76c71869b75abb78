"""A service on a temporary folder for the tests, the screenshots and the load benchmark:
the demo SQLite database as its source, a local folder as its destination, its own state
database, an admin and a viewer with passwords and API tokens (plus an expired and a revoked
admin token), and a real uvicorn server on a free loopback port when asked."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ADMIN, VIEWER = "ana@example.com", "vic@example.com"
PASSWORD = "correct horse battery staple"


def build_demo(path: Path, scale: int = 1) -> Path:
    from sqlsnap import demo

    conn = sqlite3.connect(path)
    try:
        demo.build(conn, "sqlite", scale)
    finally:
        conn.close()
    return path


@dataclass
class ServiceEnv:
    root: Path
    config_path: Path
    out: Path
    tokens: dict[str, str] = field(default_factory=dict)
    config: Any = None
    state: Any = None

    def app(self) -> Any:
        from sqlsnap.service.app import create_app

        return create_app(self.config, self.state)


#: The environment variable a PostgreSQL state's URL is given in (``make_env(state_url=...)``).
STATE_URL_ENV = "SQLSNAP_TEST_STATE_URL"


def write_config(root: Path, sources: dict[str, str], security: str = "", tables: str = "",
                 state_url: bool = False) -> Path:
    state = f'url_env = "{STATE_URL_ENV}"' if state_url else 'path = "state.db"'
    lines = [f"[state]\n{state}\n", "[security]\ncookie_secure = false\n" + security]
    for name, url in sources.items():
        lines.append(f'[sources.{name}]\nurl = "{url}"\nenvironment = "test"\n')
    lines.append('[destinations.local]\npath = "out"\n' + tables)
    path = root / "service.toml"
    path.write_text("\n".join(lines))
    return path


def bearer(env: ServiceEnv, who: str = "admin") -> dict[str, str]:
    """The API's Authorization header with ``who``'s token."""
    return {"Authorization": f"Bearer {env.tokens[who]}"}


def make_env(root: Path, demo_db: Path, extra_sources: dict[str, str] | None = None,
             security: str = "", tables: str = "", state_url: str | None = None) -> ServiceEnv:
    """A configured service in ``root`` (not started) with its accounts and tokens; its state
    in ``state.db``, or in the PostgreSQL database ``state_url`` (given as $STATE_URL_ENV)."""
    from sqlsnap.service import auth
    from sqlsnap.service.config import load_config
    from sqlsnap.service.state_open import open_state

    db = root / "demo.db"
    shutil.copyfile(demo_db, db)
    (root / "out").mkdir()
    config_path = write_config(root, {"demo": f"sqlite:///{db}", **(extra_sources or {})}, security, tables,
                               state_url is not None)
    config = load_config(config_path, env={STATE_URL_ENV: state_url} if state_url else {})
    state = open_state(config)
    auth.add_user(state, ADMIN, "admin", PASSWORD)
    auth.add_user(state, VIEWER, "viewer", PASSWORD)
    env = ServiceEnv(root, config_path, root / "out", config=config, state=state)
    env.tokens["admin"] = auth.create_token(state, ADMIN, "admin", 30)
    env.tokens["viewer"] = auth.create_token(state, VIEWER, "viewer", 30)
    env.tokens["expired"] = auth.create_token(state, ADMIN, "expired", 1)
    state.execute("UPDATE tokens SET expires = ? WHERE name = 'expired'", [time.time() - 1])
    env.tokens["revoked"] = auth.create_token(state, ADMIN, "revoked", 30)
    auth.revoke_token(state, ADMIN, "revoked")
    env.tokens["wrong"] = "snp_" + "x" * 43
    return env


def clone_env(template: ServiceEnv, root: Path) -> ServiceEnv:
    """A copy of ``template`` (closed) in ``root``: the same accounts and tokens, its own state
    database and destination folder, the template's source databases (exports only read them).
    Hashing the accounts' passwords with argon2 is what makes ``make_env`` slow."""
    from sqlsnap.service.config import load_config
    from sqlsnap.service.state import State

    root.mkdir(exist_ok=True)
    shutil.copyfile(template.config_path, root / template.config_path.name)
    shutil.copyfile(template.root / "state.db", root / "state.db")
    (root / "out").mkdir()
    config = load_config(root / template.config_path.name, env={})
    return ServiceEnv(root, root / template.config_path.name, root / "out", dict(template.tokens), config,
                      State(config.state_path))


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``port`` (default: a free loopback port) in a thread; its
    base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test service did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def wait_for(get: Any, job_id: int, timeout: float = 60) -> dict[str, Any]:
    """Poll ``get(job_id)`` (a job's JSON) until the job has ended."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = get(job_id)
        if job["status"] not in ("queued", "running"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"export {job_id} still {job['status']} after {timeout} s")
        time.sleep(0.05)


@contextlib.contextmanager
def s3_env(root: Path, demo_db: Path, monkeypatch: Any, bucket: str) -> Iterator[tuple[ServiceEnv, Any]]:
    """A service whose destination ``bucket`` is ``s3://<bucket>/sqlsnap/`` on a local S3
    server (moto), with that bucket created; the server stops afterwards."""
    from ._s3server import S3Server, aws_env

    aws_env(monkeypatch)
    server = S3Server().start()
    try:
        server.client().create_bucket(Bucket=bucket)
        yield make_env(root, demo_db, tables=f'[destinations.bucket]\nurl = "s3://{bucket}/sqlsnap/"\n'
                                             f's3_endpoint = "{server.endpoint}"\n'), server
    finally:
        server.stop()
