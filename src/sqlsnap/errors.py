"""Every error sqlsnap raises on purpose derives from :class:`SnapError`.

::

    SnapError                     exit 1   an export failed for a reason not listed below
    ├── UsageError                exit 2   bad option, URL or pattern: fix the command
    ├── SourceBusy (T)            exit 1   the source gave up waiting: a lock (--lock-timeout), a timeout
    ├── ConnectError              exit 3   cannot connect to the database server
    │   ├── ServerUnreachable (T) exit 3   down, restarting, or a network problem
    │   └── AuthenticationError   exit 3   the server refused the user or password
    ├── NotFoundError             exit 4   unknown database, schema or table; snapshot file or object missing
    ├── MissingDriverError        exit 5   an optional driver (or boto3, pyrage) is not installed
    ├── OutputError               exit 6   cannot write the destination (permissions, disk full, S3 errors)
    │   └── OutputUnavailable (T) exit 6   the store cannot be reached now (network, 5xx, throttling)
    ├── VerifyError               exit 7   verify: the snapshot is damaged or does not match its metadata
    └── Interrupted               exit 130 Ctrl-C, SIGTERM or a cancel; nothing was left under the final name

(T): also a :class:`Transient`: trying again later may succeed, so a scheduler may retry it.
Every other error is terminal: the same command fails the same way until something is fixed.

Driver errors (psycopg, PyMySQL, mysqlclient, sqlite3) are translated at the source
boundary with ``raise ... from exc`` so that they never reach the user as tracebacks.
Messages are one line, say what is wrong and how to fix it, and never contain a password.
"""

from __future__ import annotations

import errno
import os


class SnapError(Exception):
    """Root of sqlsnap's errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 1
    #: True when trying again later may succeed (a server restarting, a network blip): the
    #: classes that derive from :class:`Transient`.
    transient = False

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        #: Structured context (``table=``, ``host=``, ``path=``) for programs and logs.
        self.fields = fields

    def __str__(self) -> str:
        return self.message


class Transient(SnapError):
    """An error that may pass: trying again later may succeed. Derive from it; never set
    ``transient`` on an instance."""

    transient = True


class UsageError(SnapError):
    exit_code = 2


class SourceBusy(Transient):
    """The source gave up waiting: a lock another session holds (``--lock-timeout``), a
    ``statement_timeout``, an ``idle_in_transaction_session_timeout``, a backend terminated by
    an administrator. Trying again later may succeed."""


class ConnectError(SnapError):
    """Cannot connect to the database server: see the two kinds below."""

    exit_code = 3


class ServerUnreachable(ConnectError, Transient):
    """The database server cannot be reached (down, restarting, a network problem)."""

    exit_code = 3


class AuthenticationError(ConnectError):
    """The server answered and refused the user or the password."""


class NotFoundError(SnapError):
    exit_code = 4


class MissingDriverError(SnapError):
    exit_code = 5


class OutputError(SnapError):
    exit_code = 6


class OutputUnavailable(OutputError, Transient):
    """The destination cannot be reached now (connection refused or reset, timeouts, HTTP 5xx,
    throttling)."""

    exit_code = 6


class VerifyError(SnapError):
    """``sqlsnap verify`` (or decrypt) found the snapshot damaged, truncated or inconsistent.

    Fields: ``path``, and where known ``table``, ``line`` (in the decompressed document)."""

    exit_code = 7


class Interrupted(SnapError):
    exit_code = 130


#: The documented exit codes, for the CLI reference and the tests.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "the export failed (the message says why)",
    2: "bad command line: unknown option, malformed URL or pattern",
    3: "cannot connect or authenticate to the database server",
    4: "unknown database, schema or table; snapshot file, bucket or object not found",
    5: "a database driver (or boto3 for S3, pyrage for encryption) is not installed",
    6: "cannot write the output (permissions, missing folder, disk full, S3 errors)",
    7: "verify found the snapshot damaged, truncated or not matching its metadata",
    130: "interrupted (Ctrl-C); no file was left under the final name",
}


def temp_error(exc: OSError, folder: str, doing: str) -> OutputError:
    """A failed write in the temporary folder (TMPDIR), which is not the output's: the fix is
    room there, or TMPDIR pointed elsewhere (it was reported as the output's disk full)."""
    if exc.errno == errno.ENOSPC:
        why = f"the temporary folder {folder} is full"
    else:
        why = f"cannot write in the temporary folder {folder}: {exc.strerror or exc}"
    return OutputError(f"{why} ({doing}); free some space there or set TMPDIR to a folder with room",
                       path=folder)


def os_error(exc: OSError, path: str) -> OutputError:
    """A one-line message naming the fix for a failed write."""
    if exc.errno == errno.ENOSPC:
        return OutputError(f"disk full while writing {path}; free some space or choose another "
                           "destination with -o", path=path)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"permission denied writing {path}; choose a writable destination with -o",
                           path=path)
    if exc.errno == errno.ENOENT:
        return OutputError(f"folder {os.path.dirname(path) or '.'} does not exist; create it or choose "
                           "another destination with -o", path=path)
    return OutputError(f"cannot write {path}: {exc.strerror or exc}", path=path)
