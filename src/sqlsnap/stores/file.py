"""Local files: written under a hidden temporary name beside the final one (same file
system), flushed to disk, and renamed into place only when complete."""

from __future__ import annotations

import os
import secrets
import shutil
from typing import Any

from ..errors import OutputError, os_error


def check_writable_folder(path: str) -> None:
    """Fail before reading the database when the output folder cannot take the file."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"folder {folder} does not exist; create it or choose another destination "
                          "with -o", path=path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"permission denied writing in {folder}; choose a writable destination with -o",
                          path=path)


def temp_name(final: str, tag: str) -> str:
    """A hidden name beside ``final`` (same file system, so the last rename is atomic)."""
    folder, base = os.path.split(os.path.abspath(final))
    return os.path.join(folder, f".{base}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")


#: Written bytes are handed to the kernel for writeback every this many bytes, so that the
#: fsync at the end has little left to do (1 GB: 0.30 s of fsync, 0.02 s with this) and the
#: export does not fill the page cache of a machine that also runs the database.
WRITEBACK_BYTES = 64 << 20


class WritebackFile:
    """A binary file that starts the writeback of what it has written every
    ``WRITEBACK_BYTES`` (``POSIX_FADV_DONTNEED`` starts it without waiting, and lets the
    kernel drop the pages once written)."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "xb")  # noqa: SIM115 - closed by close()
        self._written = 0
        self._advised = 0

    def write(self, data: Any) -> int:
        n = self._fh.write(data)
        self._written += n
        if self._written - self._advised >= WRITEBACK_BYTES and hasattr(os, "posix_fadvise"):
            self._fh.flush()
            os.posix_fadvise(self._fh.fileno(), self._advised, self._written - self._advised,
                             os.POSIX_FADV_DONTNEED)
            self._advised = self._written
        return n

    def flush(self) -> None:
        self._fh.flush()

    def fileno(self) -> int:
        return self._fh.fileno()

    def close(self) -> None:
        self._fh.close()


class AtomicFile:
    """A file written under a temporary name and renamed into place by ``commit()``."""

    def __init__(self, final: str) -> None:
        self.final = final
        self.tmp = temp_name(final, "tmp")
        try:
            self.fh = WritebackFile(self.tmp)
        except OSError as exc:
            raise os_error(exc, final) from None

    def commit(self) -> None:
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.tmp, self.final)
        except OSError as exc:
            self.abort()
            raise os_error(exc, self.final) from None

    def abort(self) -> None:
        try:
            self.fh.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


class AtomicDir:
    """A folder filled under a temporary name and renamed into place by ``commit()``."""

    def __init__(self, final: str) -> None:
        self.final = final
        if os.path.exists(final):
            raise OutputError(f"{final} already exists; remove it or choose another folder with -o",
                              path=final)
        self.tmp = temp_name(final, "tmp")
        try:
            os.mkdir(self.tmp)
        except OSError as exc:
            raise os_error(exc, final) from None

    def commit(self) -> None:
        try:
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(self.tmp, self.final)
        except OSError as exc:
            self.abort()
            raise os_error(exc, self.final) from None

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
