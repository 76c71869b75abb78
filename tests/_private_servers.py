"""Throwaway database servers for faults that the shared servers must never see: restarts,
shutdowns, server settings. Each lives in its own temporary folder on its own port, runs as
the ``postgres`` / ``mysql`` system user, and is stopped by its own pidfile only (never by a
process name, which would match the shared servers)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as(user: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *cmd], capture_output=True, text=True, check=check, timeout=120)


class PrivatePostgres:
    """A PostgreSQL 15 cluster of its own: ``url`` reaches its ``postgres`` database as the
    superuser ``postgres`` (trust), over TCP on ``port``."""

    def __init__(self, settings: Sequence[str] = ()) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.skip("PostgreSQL 15 server binaries are not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="sqlsnap-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self.settings = list(settings)
        _as("postgres", str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync")
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                     f"unix_socket_directories = '{self.dir}'\nfsync = off\n")
            for s in self.settings:
                fh.write(s + "\n")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        _as("postgres", str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
            "-w", "-t", "60", "start")

    def restart(self) -> None:
        _as("postgres", str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60",
            "restart", "-l", str(self.dir / "log"))

    def stop(self) -> None:
        pidfile = self.data / "postmaster.pid"
        if pidfile.exists():
            _as("postgres", str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop",
                check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_postgres(settings: Sequence[str] = ()) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(settings)
    try:
        yield server
    finally:
        server.stop()


def wait_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


class PrivateMariaDB:
    """A MariaDB instance of its own (empty root password), on ``port``; stopped by its
    pidfile, never by a process name (that would match the shared server)."""

    def __init__(self) -> None:
        if not Path("/usr/sbin/mariadbd").exists() or shutil.which("mariadb-install-db") is None:
            pytest.skip("the MariaDB server is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="sqlsnap-mariadb-"))
        shutil.chown(self.dir, "mysql", "mysql")
        self.data = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"
        self.pidfile = self.dir / "mariadbd.pid"
        self.port = free_port()
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--user=mysql",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       capture_output=True, text=True, check=True, timeout=120)
        self.start()

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/mysql"

    def start(self) -> None:
        subprocess.run(["start-stop-daemon", "--start", "--background", "--make-pidfile", "--pidfile",
                        str(self.pidfile), "--exec", "/usr/sbin/mariadbd", "--", "--no-defaults",
                        f"--datadir={self.data}", f"--socket={self.socket}", f"--port={self.port}",
                        "--bind-address=127.0.0.1", "--user=mysql", f"--log-error={self.dir / 'error.log'}"],
                       check=True, timeout=60)
        wait_port(self.port)

    def shutdown(self) -> None:
        """As an administrator's `mariadb-admin shutdown`: the server ends every session."""
        subprocess.run(["mariadb-admin", f"--socket={self.socket}", "-uroot", "shutdown"], check=False,
                       capture_output=True, timeout=60)

    def stop(self) -> None:
        if self.pidfile.exists():
            subprocess.run(["start-stop-daemon", "--stop", "--pidfile", str(self.pidfile), "--retry", "30"],
                           check=False, capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_mariadb() -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB()
    try:
        yield server
    finally:
        server.stop()
