"""Local files: written under a hidden temporary name beside the final one (same file
system), flushed to disk, and renamed into place only when complete.

:class:`FileStore` is the ``file`` store: keys are ``/``-separated paths below a root folder.
An object is an :class:`AtomicFile`; a batch is an :class:`AtomicDir` (a hidden folder
renamed into place, so its files appear at once). Listing skips the hidden temporary names
of writes in progress, and symbolic links (which prune must not follow into other folders).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import NotFoundError, OutputError, UsageError, os_error
from .base import Entry, Reader, Store, TrackedBatch, Upload


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


#: What :func:`temp_name` makes: not listed, as the write it belongs to is not finished.
TEMP_NAME = re.compile(r"^\..+\.[a-z]+-(\d+)-[0-9a-f]{8}$")

#: A temporary untouched for this long whose process is gone is stale. The wait covers a
#: process of the same machine in another PID namespace (a container sharing the folder),
#: which looks gone from here: a live export writes its temporaries far more often than
#: this (it waits on locks before it creates them).
STALE_SECONDS = 600


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), from /proc; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/stat") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _last_change(path: str) -> float:
    """The newest modification time of ``path`` and, for a folder, of what is in it."""
    newest = os.lstat(path).st_mtime
    if os.path.isdir(path) and not os.path.islink(path):
        for folder, _dirs, files in os.walk(path):
            for name in files:
                try:
                    newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
                except OSError:
                    pass
    return newest


def is_stale(path: str, now: float | None = None) -> bool:
    """Whether the temporary at ``path`` belongs to no running process: the process whose
    id is in its name is gone (or is a newer process that reuses the id, started after the
    temporary last changed), and it has not changed for STALE_SECONDS."""
    m = TEMP_NAME.match(os.path.basename(path))
    if m is None:
        return False
    pid = int(m[1])
    try:
        changed = _last_change(path)
    except OSError:
        return False
    if (now or time.time()) - changed < STALE_SECONDS:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    started = _process_start(pid)
    return started is not None and started > changed


def remove_stale_temporaries(folder: str) -> list[str]:
    """Remove the stale temporaries (:func:`is_stale`) in ``folder``; their paths."""
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in sorted(names):
        path = os.path.join(folder, name)
        if not name.startswith(".") or not is_stale(path):
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError:
            continue  # not ours to remove (permissions): left, as before
        removed.append(path)
    return removed


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


class AtomicFile(Upload):
    """A file written under a temporary name and renamed into place by ``commit()``. Write
    through ``write()`` (an :class:`Upload`) or straight to ``fh``."""

    def __init__(self, final: str) -> None:
        self.final = final
        self.tmp = temp_name(final, "tmp")
        try:
            self.fh = WritebackFile(self.tmp)
        except OSError as exc:
            raise os_error(exc, final) from None

    def write(self, data: bytes | memoryview, /) -> int:
        try:
            n = self.fh.write(data)
        except OSError as exc:
            raise os_error(exc, self.final) from None
        self.bytes += n
        return n

    def commit(self) -> None:
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.tmp, self.final)
        except OSError as exc:
            self.abort()
            raise os_error(exc, self.final) from None
        self.state = "committed"

    def abort(self) -> None:
        if self.state == "committed":
            return  # the file is in place: an abort in a ``finally`` must not remove it
        self.state = "aborted"
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


class LocalReader:
    """A local file opened for reading, with one-line errors."""

    def __init__(self, path: str) -> None:
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise NotFoundError(f"{path} does not exist", path=path) from None
        except IsADirectoryError:
            raise UsageError(f"{path} is a folder; give a snapshot file", path=path) from None
        except OSError as exc:
            raise os_error(exc, path) from None

    def read(self, n: int = -1, /) -> bytes:
        return self._fh.read(n)

    def close(self) -> None:
        self._fh.close()


class FileStore(Store):
    """A local folder. Keys are paths below ``root`` (``""`` is the root itself), shown as
    paths joined to ``root`` as it was given, so that relative paths stay relative. Folders
    below the root are made as keys need them (and stay); the root itself never is."""

    scheme = "file"

    def __init__(self, root: str) -> None:
        self.root = root or "."

    def path(self, key: str) -> str:
        """The local path of ``key``; keys cannot leave the root (no ``..``, no absolute key)."""
        parts = key.rstrip("/").split("/") if key.rstrip("/") else []
        if key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in key:
            raise UsageError(f"'{key}' is not a key below {self.root}; use names separated by '/', "
                             "without '.', '..' or a leading '/'", path=key)
        return os.path.join(self.root, *parts) if parts else self.root

    def url(self, key: str) -> str:
        return self.path(key)

    def check_writable(self, key: str) -> None:
        path = self.path(key)
        if os.path.isdir(path) and not key.endswith("/"):
            raise OutputError(f"{path} is an existing folder; give a new name with -o", path=path)
        check_writable_folder(path)

    def _make_parent(self, path: str) -> None:
        """Make the folders between the root and ``path``, as keys with ``/`` need (S3 has
        no folders to make); never the root itself: a missing root is the user's mistake."""
        parent = os.path.dirname(path)
        if parent != os.path.normpath(self.root) and os.path.isdir(self.root):
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise os_error(exc, path) from None

    def check_object_name(self, key: str) -> None:
        path = self.path(key)
        if os.path.isdir(path):  # the name is taken: an output problem (exit 6), as a file there
            raise OutputError(f"{path} is an existing folder; give a new name with -o, e.g. "
                              f"{os.path.join(path, '{database}-{timestamp}.json')}", path=path)
        if not key or key.endswith("/"):
            raise UsageError(f"{path} names a folder; give a file name, e.g. "
                             f"{os.path.join(path, '{database}-{timestamp}.json')}", path=path)

    def create(self, key: str) -> AtomicFile:
        self.check_object_name(key)
        path = self.path(key)
        self._make_parent(path)
        return AtomicFile(path)

    def batch(self, prefix: str) -> FileBatch:
        self._make_parent(self.path(prefix.rstrip("/")))
        return FileBatch(self, prefix.rstrip("/"))

    def put(self, key: str, data: bytes) -> None:
        upload = self.create(key)
        try:
            upload.write(data)
        except BaseException:
            upload.abort()
            raise
        upload.commit()

    def open(self, key: str) -> Reader:
        return LocalReader(self.path(key))

    def read_small(self, key: str, limit: int = 1 << 20) -> bytes | None:
        path = self.path(key)
        try:
            with open(path, "rb") as fh:
                return fh.read(limit)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise os_error(exc, path) from None

    def exists(self, key: str) -> bool:
        return os.path.lexists(self.path(key))

    def remove_stale(self, prefix: str) -> list[str]:
        folder_key = prefix.rpartition("/")[0]
        return remove_stale_temporaries(self.path(folder_key))

    def list(self, prefix: str = "") -> Iterator[Entry]:
        folder_key, _, start = prefix.rpartition("/")
        folder = self.path(folder_key)
        base = folder_key + "/" if folder_key else ""
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            # As in a bucket: nothing under a prefix is an empty list; a missing store is an error.
            if os.path.isdir(self.root):
                return
            raise NotFoundError(f"folder {self.root} does not exist", path=self.root) from None
        except OSError as exc:
            raise os_error(exc, folder) from None
        found: list[Entry] = []
        for entry in entries:
            if not entry.name.startswith(start) or TEMP_NAME.match(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    found.append(Entry(base + entry.name + "/", prefix=True))
                elif entry.is_file(follow_symlinks=False):
                    stat = entry.stat(follow_symlinks=False)
                    found.append(Entry(base + entry.name, stat.st_size,
                                       datetime.fromtimestamp(stat.st_mtime, UTC)))
            except FileNotFoundError:  # deleted while listing
                continue
        yield from sorted(found, key=lambda e: e.key)

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            if not key.rstrip("/"):
                raise UsageError(f"refusing to delete the whole of {self.root}; name what to delete",
                                 path=self.root)
            path = self.path(key)
            try:
                if key.endswith("/"):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise os_error(exc, path) from None


class FileBatch(TrackedBatch):
    """Files written in a hidden folder beside the final one, renamed into place at once."""

    def __init__(self, store: FileStore, prefix: str) -> None:
        final = store.path(prefix)
        super().__init__(final)
        check_writable_folder(final)
        self._dir = AtomicDir(final)

    def _new(self, name: str) -> Upload:
        relative = FileStore(self._dir.tmp).path(name)  # checks the name: no '..', no leading '/'
        try:
            os.makedirs(os.path.dirname(relative), exist_ok=True)
        except OSError as exc:
            raise os_error(exc, self._where) from None
        return AtomicFile(relative)

    def _publish(self, uploads: dict[str, Upload]) -> None:
        self._dir.commit()  # fsyncs the folder, renames it into place; removes it on failure

    def _drop(self, uploads: list[Upload]) -> None:
        for upload in uploads:
            upload.abort()
        self._dir.abort()
