"""Standard output, for ``-o -``: cannot be made atomic, so a failure is reported by the exit
code alone. The ``stdout`` store is write-only: one object, no keys, nothing to read, list,
delete or put beside it."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn

from ..errors import UsageError
from .base import Batch, Entry, Reader, Store, Upload


class StdoutSink(Upload):
    """Standard output: cannot be made atomic, so a failure is reported by the exit code.
    ``sys.stdout`` is looked up when the sink is made (tests and the CLI runner replace it)."""

    final = "-"

    def __init__(self) -> None:
        self.fh = sys.stdout.buffer

    def write(self, data: bytes | memoryview, /) -> int:
        n: int = self.fh.write(data)
        self.bytes += n
        return n

    def flush(self) -> None:
        self.fh.flush()

    def commit(self) -> None:
        self.fh.flush()
        self.state = "committed"

    def abort(self) -> None:
        self.state = "aborted"
        try:
            self.fh.flush()
        except OSError:
            pass


class StdoutStore(Store):
    """``-``: every object is written to standard output; nothing can be read back."""

    scheme = "stdout"

    def url(self, key: str) -> str:
        return "-"

    def check_writable(self, key: str) -> None:
        pass

    def check_object_name(self, key: str) -> None:
        pass  # one stream, no names

    def create(self, key: str) -> StdoutSink:
        return StdoutSink()

    def _refuse(self, what: str, fix: str = "give a file path or an s3:// URL instead") -> NoReturn:
        raise UsageError(f"standard output (-) is write-only and cannot {what}; {fix}", path="-")

    def batch(self, prefix: str) -> Batch:
        self._refuse("hold a folder of files (JSON Lines)", "give the folder with -o FOLDER")

    def put(self, key: str, data: bytes) -> None:
        self._refuse("take a second file (a .sha256 checksum)")

    def open(self, key: str) -> Reader:
        self._refuse("be read")

    def read_small(self, key: str, limit: int = 1 << 20) -> bytes | None:
        self._refuse("be read")

    def exists(self, key: str) -> bool:
        self._refuse("be looked into")

    def list(self, prefix: str = "") -> Iterator[Entry]:
        self._refuse("be listed")

    def delete(self, keys: Sequence[str]) -> None:
        self._refuse("delete anything")
