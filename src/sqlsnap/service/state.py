"""The service's own state: accounts, sessions, API tokens, export jobs and the audit trail,
in one SQLite file (``[state] path``), or in a PostgreSQL database (``[state] url_env``:
:mod:`.state_pg`, the same tables and statements behind the same methods).

One connection, shared by the web server's threads and the export workers under a lock:
every statement here is a few rows, so the lock is held for microseconds, and WAL mode lets
the CLI (``sqlsnap users``, ``tokens``, ``audit``) write from another process meanwhile
(``busy_timeout`` waits for the other writer instead of failing).

The audit table is append-only in the database too: triggers refuse UPDATE and DELETE. That
stops mistakes, not an attacker with the file; the hash chain (:mod:`.audit`) shows those.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import OutputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    password_hash TEXT,
    created REAL NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    revoked REAL,
    UNIQUE (user_id, name)
);
CREATE TABLE IF NOT EXISTS login_failures (
    address TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_address ON login_failures (address, at);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    actor TEXT NOT NULL,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    target TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress TEXT,
    summary TEXT,
    error TEXT,
    deleted REAL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    address TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""
#: SQLite's way to make the audit table append-only (:mod:`.state_pg` has PostgreSQL's).
APPEND_ONLY = """
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


class State:
    """The state database at ``path`` (created with its tables when missing)."""

    def __init__(self, path: str) -> None:
        self.path = path
        folder = Path(path).resolve().parent
        if not folder.is_dir():
            raise OutputError(f"folder {folder} for the state database does not exist; create it or change "
                              "[state] path", path=path)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA + APPEND_ONLY)
        except sqlite3.Error as exc:
            raise OutputError(f"cannot open the state database {path}: {exc}; check [state] path",
                              path=path) from None
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A write transaction taken at once (BEGIN IMMEDIATE), so that what it reads (the last
        audit hash) cannot change under it, even from another process."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the new row's id (for an INSERT) or the rows changed."""
        with self._lock:
            cur = self._db.execute(sql, params)
            inserted = sql.lstrip().upper().startswith("INSERT") and cur.lastrowid
            return cur.lastrowid if inserted and cur.lastrowid else cur.rowcount

    @property
    def shown(self) -> str:
        """Where the state is, as the service may print it."""
        return self.path

    def create(self, ddl: str) -> None:
        """Create the tables of ``ddl`` (``CREATE ... IF NOT EXISTS`` statements, in SQLite's
        words: :mod:`.state_pg` translates them) when missing."""
        with self._lock:
            self._db.executescript(ddl)

    def ensure_column(self, table: str, column: str, declaration: str) -> None:
        """Add ``column`` to ``table`` when a state database made by an older version lacks it
        (the schema only grows: an older version ignores the new columns)."""
        with self._lock:
            columns = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row (by name: ``row["id"]``, ``row.keys()``), or None."""
        with self._lock:
            return self._db.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())


def now() -> float:
    return time.time()
