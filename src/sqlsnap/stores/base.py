"""The interface every store implements: a place where snapshots are written, read, listed
and deleted, addressed by keys (``/``-separated names below the store's root).

A store never shows a half-written object: bytes go to an :class:`Upload`, which makes its
object appear under its key only on ``commit()`` and leaves nothing behind on ``abort()``.
Several objects that must appear together (a JSON Lines snapshot: one file per table and the
manifest) are written through a :class:`Batch`: none of them is visible before
``Batch.commit()``, and a failed or abandoned batch leaves nothing behind. Where the store
cannot show them all at once (S3), the manifest (:data:`sqlsnap.format.MANIFEST`) appears
last: a prefix without it is not a snapshot (yet, or any more).

The one exception is ``stdout``: bytes written cannot be taken back, so there a failure is
told by the exit code alone.

Implementations, registered by URL scheme in :mod:`sqlsnap.stores`: ``file`` (a local
folder; the default for a plain path), ``s3`` (a bucket and prefix), ``memory`` (a dict, for
tests and for callers that want bytes), and ``stdout`` (write-only: one object, no keys).
"""

from __future__ import annotations

import builtins
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..errors import OutputError, UsageError


class Reader(Protocol):
    """A stream of an object's bytes."""

    def read(self, n: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Entry:
    """An object (``prefix=False``) or a common prefix one level down (``prefix=True``: a
    "folder", its key ending in ``/``) found by :meth:`Store.list`."""

    key: str
    size: int = 0
    modified: datetime | None = None
    prefix: bool = False


class Upload(ABC):
    """An object being written. ``write`` may be called from one thread at a time. An upload
    can stand where a binary file object is expected (``write``, ``flush``)."""

    #: Bytes written so far. (It shadows the type in this class: annotations here say
    #: ``builtins.bytes``.)
    bytes: int = 0
    #: ``"open"``, then ``"committed"`` or ``"aborted"``: what a :class:`Batch` checks before
    #: its own commit.
    state: str = "open"

    @abstractmethod
    def write(self, data: builtins.bytes | memoryview, /) -> int:
        """Send ``data`` on its way (buffered, uploaded or written as the store does)."""

    def flush(self) -> None:
        """Nothing to do: ``commit()`` makes the bytes durable. Here because compressors
        (gzip, zstandard) flush the file object they write to."""
        return None

    @abstractmethod
    def commit(self) -> None:
        """Make the object visible under its key, whole; raises SnapError on failure (after
        which nothing is visible and nothing is left behind)."""

    @abstractmethod
    def abort(self) -> None:
        """Drop what was written: nothing visible, nothing left (idempotent, never raises
        for what is already gone; nothing to do after a commit). Raises only to say what
        could not be removed (an S3 upload the store would not abort), and how to remove it."""


class Batch(ABC):
    """Objects below one prefix that become visible together on :meth:`commit`.
    ``create`` may be called from several threads, each upload written by one."""

    @abstractmethod
    def create(self, name: str) -> Upload:
        """A new object ``<prefix>/<name>`` in the batch (``name`` may hold ``/``; each name
        once). Its ``commit()`` only finishes its bytes; the object appears with the batch."""

    @abstractmethod
    def commit(self) -> None:
        """Make every object of the batch visible (:data:`sqlsnap.format.MANIFEST` last, where
        order can be seen); on failure nothing of the batch is left. Every upload created
        must be committed first: one still open or aborted fails the batch (OutputError),
        so that a snapshot never appears with a table missing."""

    @abstractmethod
    def abort(self) -> None:
        """Drop every object of the batch (idempotent; nothing to do after a commit). Raises
        only to say what could not be removed, and how to remove it."""


class TrackedBatch(Batch):
    """What every batch keeps: its uploads by name, one lock, and its state (open, then
    committing and committed, or aborted). A store's batch says how to make an upload
    (:meth:`_new`), how to make the finished uploads visible together (:meth:`_publish`), and
    how to drop them (:meth:`_drop`)."""

    def __init__(self, where: str) -> None:
        #: How the batch is named in messages (a folder, ``s3://bucket/prefix/``).
        self._where = where
        self._uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()
        self._state = "open"

    @abstractmethod
    def _new(self, name: str) -> Upload:
        """A new upload for ``name`` (called under the lock)."""

    @abstractmethod
    def _publish(self, uploads: dict[str, Upload]) -> None:
        """Make every upload visible, the manifest last where order can be seen."""

    @abstractmethod
    def _drop(self, uploads: builtins.list[Upload]) -> None:
        """Remove what the uploads wrote (idempotent)."""

    def _check_open(self) -> None:
        if self._state != "open":
            raise OutputError(f"the batch {self._where} was already ended", path=self._where)

    def create(self, name: str) -> Upload:
        with self._lock:
            self._check_open()
            if name in self._uploads:
                raise UsageError(f"{name} was already written in {self._where}", path=self._where)
            upload = self._uploads[name] = self._new(name)
        return upload

    def commit(self) -> None:
        with self._lock:
            self._check_open()
            self._state = "committing"
            uploads = dict(self._uploads)
        try:
            unfinished = [n for n, u in uploads.items() if u.state != "committed"]
            if unfinished:
                raise OutputError(f"cannot finish {self._where}: {unfinished[0]} was not written to the end "
                                  f"({len(unfinished)} unfinished)", path=self._where)
            self._publish(uploads)
        except BaseException:
            self.abort()
            raise
        self._state = "committed"

    def abort(self) -> None:
        with self._lock:
            if self._state in ("committed", "aborted"):
                return
            self._state = "aborted"
            uploads = builtins.list(self._uploads.values())
        self._drop(uploads)


class Store(ABC):
    #: The URL scheme this store is registered under (``file``, ``s3``, ``memory``, ``stdout``).
    scheme: str

    @abstractmethod
    def url(self, key: str) -> str:
        """How ``key`` is shown to people (a path, ``s3://bucket/key``): never a credential."""

    @abstractmethod
    def check_writable(self, key: str) -> None:
        """Fail (OutputError, NotFoundError) before any row is read if ``key`` cannot be written."""

    def check_object_name(self, key: str) -> None:
        """Fail (UsageError) when ``key`` cannot name one object (it is empty, or a folder),
        saying how to name one; what :meth:`create` would refuse, without touching the store."""
        if not key or key.endswith("/"):
            example = self.url(key.rstrip("/") + "/app.json" if key.rstrip("/") else "app.json")
            raise UsageError(f"{self.url(key)} names no object; give a name too, e.g. {example}",
                             path=self.url(key))

    @abstractmethod
    def create(self, key: str) -> Upload:
        """A new object at ``key``, visible only once committed."""

    @abstractmethod
    def batch(self, prefix: str) -> Batch:
        """Objects under ``prefix`` (a folder; ``""`` is the store's root) that appear
        together. Fails with OutputError if something already exists at ``prefix``."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write a small object whole (checksum files), atomically."""

    @abstractmethod
    def open(self, key: str) -> Reader:
        """The object's bytes; NotFoundError when there is none."""

    @abstractmethod
    def read_small(self, key: str, limit: int = 1 << 20) -> bytes | None:
        """The first ``limit`` bytes of a small object, None when there is none."""

    def remove_stale(self, prefix: str) -> list[str]:
        """Remove the temporaries that killed writes left under ``prefix`` (one level down);
        their names. A store whose unfinished writes are invisible or expire (S3's multipart
        uploads: a lifecycle rule) has none."""
        return []

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object, or a non-empty prefix, is at ``key`` (in a ``file`` store, any
        folder, even an empty one)."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[Entry]:
        """Objects whose key starts with ``prefix`` one level down (no ``/`` after the
        prefix), and the common prefixes ("folders") of deeper ones, sorted by key; keys are
        whole (from the store's root). NotFoundError when the store itself (the root folder,
        the bucket) does not exist; a prefix with nothing under it lists nothing."""

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> None:
        """Delete these objects; a key ending in ``/`` deletes everything under it (``""``,
        the whole store, is refused: UsageError). Keys already gone are no error."""
