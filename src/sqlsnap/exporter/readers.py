"""Reader threads: ``jobs`` connections to the shared snapshot, each taking the next part to
read and streaming its JSON lines into the sink the caller gives for it."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Interrupted, os_error
from ..model import Table
from ..plan.request import ReadRequest
from ..sources import Source
from ..sources.base import Cancelled, TableReader
from .result import Progress, TableResult

#: What an export says when it was cancelled (Ctrl-C, SIGTERM, or a caller's cancel event).
CANCELLED = "the export was abandoned and no file was left behind"


@dataclass
class Task:
    """A unit of reading: a whole table, or one of the ranges (``request.part``) a large
    table is split into; ``index`` is the range's place among the table's ranges."""

    request: ReadRequest
    index: int = 0
    rows: int = 0
    bytes: int = 0

    @property
    def name(self) -> str:
        return self.request.table.name


class Readers:
    """Reader threads streaming ``parts`` through the sink that ``open_part`` gives, ``jobs``
    at a time, each taking the next part in the order given. Each table's rows and bytes
    are summed into ``results`` when its last part is done. ``cancel`` is set to stop them
    (by this class on a failure; by a caller through ``requested``, the export's cancel
    event, which :meth:`check` turns into :class:`Interrupted`).

    The callers' orders: document order for the document, whose writer takes the parts in
    that order (largest-first spooled all of the benchmark's 1 GB: the writer's first tables
    are small ones that nobody read until the large parts were done; document order is what
    makes the spool budget deadlock-free); largest first for JSON Lines, which has no writer
    to feed, so that the longest table starts at once."""

    def __init__(
        self,
        source: Source,
        parts: Sequence[Task],
        jobs: int,
        open_part: Callable[[Task], Any],
        results: dict[str, TableResult],
        progress: Progress | None,
        cancel: threading.Event,
        requested: threading.Event | None = None,
    ) -> None:
        self.source = source
        self.open_part = open_part
        self.results = results
        self.progress = progress
        self.cancel = cancel
        self.requested = requested
        self.todo = deque(parts)
        self.pending: dict[str, list[Task]] = {}
        for part in parts:
            self.pending.setdefault(part.name, []).append(part)
        self.errors: list[BaseException] = []
        self.readers: list[TableReader] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._worker, name=f"sqlsnap-reader-{i}", daemon=True)
                        for i in range(jobs)]
        for th in self.threads:
            th.start()

    def _export_one(self, reader: TableReader, part: Task) -> None:
        out = self.open_part(part)
        try:
            for chunk, rows in reader.read(part.request, self.cancel):
                out.write(chunk)
                part.rows += rows
                part.bytes += len(chunk)
                if self.progress:
                    self.progress.advance(part.name, rows, len(chunk))
            with self.lock:
                siblings = self.pending[part.name]
                siblings.remove(part)
                last = not siblings
                result = self.results[part.name]
                result.rows += part.rows
                result.bytes += part.bytes
            out.finish()
        finally:
            out.close()
        if last and self.progress:
            self.progress.table_done(part.name, result.rows, result.bytes)

    def _next(self) -> Task | None:
        with self.lock:
            return self.todo.popleft() if self.todo else None

    def _worker(self) -> None:
        try:
            with self.source.reader() as reader:
                with self.lock:
                    self.readers.append(reader)
                while not self.cancel.is_set() and (part := self._next()) is not None:
                    self._export_one(reader, part)
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            with self.lock:
                self.errors.append(exc)
            self.stop()

    def stop(self) -> None:
        """Cancel every reader (their queries too) without waiting for them."""
        self.cancel.set()
        with self.lock:
            readers = list(self.readers)
        for r in readers:
            r.cancel()

    def check(self) -> None:
        """Raise the first reader's error, if one failed, or Interrupted when the caller asked
        for the export to stop (after stopping the readers' queries)."""
        if self.requested is not None and self.requested.is_set() and not self.errors:
            self.stop()
            raise Interrupted(f"cancelled; {CANCELLED}")
        if self.errors:
            exc = self.errors[0]
            if isinstance(exc, OSError):
                raise os_error(exc, getattr(exc, "filename", None) or "the output") from None
            raise exc

    def wait(self) -> None:
        """Wait for every reader to end (interruptible by Ctrl-C), then raise any error."""
        for th in self.threads:
            while th.is_alive():
                th.join(0.2)
                self.check()
        self.check()

    def abandon(self) -> None:
        self.stop()
        for th in self.threads:
            th.join(10)


def run_readers(readers_args: dict[str, Any], body: Callable[[Readers], None]) -> None:
    """Start the readers, run ``body`` (the writer) beside them, and wait for both; Ctrl-C or
    any failure cancels the readers' queries."""
    readers = Readers(**readers_args)
    try:
        body(readers)
        readers.wait()
    except KeyboardInterrupt:
        readers.abandon()
        raise Interrupted(f"interrupted; {CANCELLED}") from None
    except BaseException:
        readers.abandon()
        raise


def size_of(table: Table) -> int:
    """What to read first: the largest tables (by bytes where the source knows them)."""
    return table.estimated_bytes or table.estimated_rows or 0
