"""The ``memory`` store: objects in a dict, for tests and for library callers that want the
bytes rather than a file. ``memory://NAME/key`` names a process-wide store (:func:`named`),
so that a command run in-process (the CLI's test runner) and the test see the same objects.

Thread-safe: one lock guards the dict; an object appears (under the lock) only on commit,
a batch's objects all at once on the batch's commit.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from ..errors import NotFoundError, OutputError, UsageError
from ..format import MANIFEST
from .base import Entry, Reader, Store, TrackedBatch, Upload

_NAMED: dict[str, MemoryStore] = {}
_NAMED_LOCK = threading.Lock()


def named(name: str) -> MemoryStore:
    """The process-wide store called ``name`` (made empty on first use)."""
    with _NAMED_LOCK:
        store = _NAMED.get(name)
        if store is None:
            store = _NAMED[name] = MemoryStore(name)
        return store


def _check_key(key: str, *, prefix_ok: bool = False) -> str:
    stripped = key[:-1] if prefix_ok and key.endswith("/") else key
    if not stripped or stripped.startswith("/") or "" in stripped.split("/"):
        raise UsageError(f"'{key}' is not a key; use names separated by single '/', "
                         "e.g. dumps/app.json", path=key)
    return key


class MemoryStore(Store):
    scheme = "memory"

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._objects: dict[str, bytes] = {}
        self._modified: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def url(self, key: str) -> str:
        return f"memory://{self.name}/{key}"

    def check_writable(self, key: str) -> None:
        _check_key(key, prefix_ok=True)

    def create(self, key: str) -> MemoryUpload:
        return MemoryUpload(self, _check_key(key))

    def batch(self, prefix: str) -> MemoryBatch:
        return MemoryBatch(self, prefix.rstrip("/"))

    def put(self, key: str, data: bytes) -> None:
        self._store({_check_key(key): bytes(data)})

    def _store(self, objects: dict[str, bytes], *, empty_prefix: str | None = None) -> None:
        """Add ``objects`` at once; with ``empty_prefix``, only if nothing is there yet."""
        now = datetime.now(UTC)
        with self._lock:
            if empty_prefix is not None and self._exists(empty_prefix):
                raise OutputError(f"{self.url(empty_prefix)} already exists; remove it or choose "
                                  "another name", path=self.url(empty_prefix))
            self._objects.update(objects)
            self._modified.update(dict.fromkeys(objects, now))

    def set_modified(self, key: str, when: datetime) -> None:
        """Change an object's modification time (tests of retention by age)."""
        with self._lock:
            if key not in self._objects:
                raise NotFoundError(f"{self.url(key)} does not exist", path=self.url(key))
            self._modified[key] = when

    def open(self, key: str) -> Reader:
        with self._lock:
            data = self._objects.get(key)
        if data is None:
            raise NotFoundError(f"{self.url(key)} does not exist", path=self.url(key))
        return io.BytesIO(data)

    def read_small(self, key: str, limit: int = 1 << 20) -> bytes | None:
        with self._lock:
            data = self._objects.get(key)
        return None if data is None else data[:limit]

    def _exists(self, key: str) -> bool:
        if key in self._objects:
            return True
        folder = key if key.endswith("/") or not key else key + "/"
        return any(k.startswith(folder) for k in self._objects)

    def exists(self, key: str) -> bool:
        with self._lock:
            return self._exists(key)

    def list(self, prefix: str = "") -> Iterator[Entry]:
        found: dict[str, Entry] = {}
        with self._lock:
            for key, data in self._objects.items():
                if not key.startswith(prefix):
                    continue
                slash = key.find("/", len(prefix))
                if slash < 0:
                    found[key] = Entry(key, len(data), self._modified[key])
                else:
                    found.setdefault(key[:slash + 1], Entry(key[:slash + 1], prefix=True))
        yield from (found[k] for k in sorted(found))

    def delete(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                if not key:
                    raise UsageError(f"refusing to delete the whole of {self.url('')}; name what "
                                     "to delete", path=self.url(""))
                doomed = [k for k in self._objects if k.startswith(key)] if key.endswith("/") else [key]
                for k in doomed:
                    self._objects.pop(k, None)
                    self._modified.pop(k, None)


class MemoryUpload(Upload):
    def __init__(self, store: MemoryStore, key: str, *, in_batch: bool = False) -> None:
        self._store = store
        self.key = key
        self._buffer: io.BytesIO | None = io.BytesIO()
        #: In a batch, the bytes wait in ``data`` for the batch's commit.
        self._in_batch = in_batch
        self.data: bytes | None = None

    def write(self, data: bytes | memoryview, /) -> int:
        if self._buffer is None:
            raise OutputError(f"the upload to {self._store.url(self.key)} was already ended",
                              path=self._store.url(self.key))
        n = self._buffer.write(data)
        self.bytes += n
        return n

    def commit(self) -> None:
        if self._buffer is None:
            raise OutputError(f"the upload to {self._store.url(self.key)} was already ended",
                              path=self._store.url(self.key))
        data, self._buffer = self._buffer.getvalue(), None
        if self._in_batch:
            self.data = data
        else:
            self._store._store({self.key: data})
        self.state = "committed"

    def abort(self) -> None:
        if self.state == "committed" and not self._in_batch:
            return
        self._buffer = None
        self.data = None
        self.state = "aborted"


class MemoryBatch(TrackedBatch):
    def __init__(self, store: MemoryStore, prefix: str) -> None:
        super().__init__(store.url(prefix))
        self._store = store
        self._prefix = prefix
        if prefix:
            _check_key(prefix)
        if store.exists(prefix):
            raise OutputError(f"{store.url(prefix)} already exists; remove it or choose another name",
                              path=store.url(prefix))

    def _new(self, name: str) -> Upload:
        key = _check_key(f"{self._prefix}/{name}" if self._prefix else name)
        return MemoryUpload(self._store, key, in_batch=True)

    def _publish(self, uploads: dict[str, Upload]) -> None:
        # All at once, under the store's lock: the manifest's place in the order does not show.
        mine = {n: u for n, u in uploads.items() if isinstance(u, MemoryUpload)}
        objects = {u.key: u.data or b"" for n, u in mine.items() if n != MANIFEST}
        objects.update({u.key: u.data or b"" for n, u in mine.items() if n == MANIFEST})
        self._store._store(objects, empty_prefix=self._prefix)

    def _drop(self, uploads: list[Upload]) -> None:
        for upload in uploads:
            upload.abort()
