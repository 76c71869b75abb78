"""The way a part's JSON lines travel from its reader thread to the document writer: in
memory while the writer is on it, read ahead in memory within a shared budget, beyond it in
an unlinked spool file (see :class:`_Channel`)."""

from __future__ import annotations

import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import temp_error
from ..sources.base import CHUNK_BYTES, Cancelled

#: Read size of spooled table bytes on their way into the document (1 MiB: as CHUNK_BYTES).
COPY_BYTES = 1 << 20
#: Bytes of the table the writer is on that its reader may hold in memory before it waits
#: for the writer: a few chunks, so reading and writing overlap without memory growing.
LIVE_BYTES = 4 * CHUNK_BYTES


#: With several readers, every table at least twice this size (of storage, as the source
#: estimates it) is read in parts of about this size (``Source.split``), taken in document
#: order. Small parts keep what a reader reads ahead of the writer small enough to wait in
#: memory: with halves of the largest table and whole other tables, 590 MB of the
#: benchmark's 1 GB document went through spool files; with 4 MB parts and 16 MiB ahead,
#: none, but the peak RSS grew from 63 to 76 MB from scale 25 to 100 (bench/README.md).
PART_BYTES = 2 << 20
#: The most bytes that parts read ahead of the writer may hold in memory at once, shared by
#: every part; beyond it they go to spool files.
AHEAD_BYTES = 8 << 20
#: The most bytes that parts read ahead of the writer may hold in spool files at once; a
#: reader that would go over waits for the writer. Without a bound the readers spooled up
#: to 600 MB of the benchmark's 1 GB document (largest-first reading: all of it). With two
#: readers, 512 MiB cost no time there (6.26-6.31 s against 6.21-6.37 s); 256 MiB cost
#: 0.4 s.
SPOOL_BYTES = 512 << 20


class Budget:
    """Bytes held by parts read ahead of the writer (in memory, or in spool files), shared
    by every channel of an export, at most ``limit``.

    Waiting for room is deadlock-free because parts are read in document order: the part the
    writer is on was picked before every part after it, so its reader is live (never waits
    here) and the writer always moves on, releasing what it has written out."""

    def __init__(self, limit: int, cancel: threading.Event) -> None:
        self.limit = limit
        self.cancel = cancel
        self.used = 0
        self.cond = threading.Condition()

    def acquire(self, n: int, gave_up: Callable[[], bool]) -> bool:
        """Reserve ``n`` bytes, waiting while over the limit; False (nothing reserved) if
        ``gave_up()`` turns true meanwhile (the writer reached the channel)."""
        with self.cond:
            while self.used and self.used + n > self.limit:
                if self.cancel.is_set():
                    raise Cancelled
                if gave_up():
                    return False
                self.cond.wait(0.2)
            self.used += n
            return True

    def try_acquire(self, n: int) -> bool:
        """Reserve ``n`` bytes if there is room now."""
        with self.cond:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class Channel:
    """One part's JSON lines on their way from its reader to the document writer.

    While the writer is on this part ("live"), chunks pass in memory, at most
    ``LIVE_BYTES`` ahead of it. Before that, they wait in memory while the export's
    read-ahead budget (``ahead``) has room, then in a spool file (unless ``may_spool`` is
    off: then the reader waits for the writer). They come out in the order they went in:
    memory, spool, then live."""

    def __init__(self, folder: str, cancel: threading.Event, may_spool: bool,
                 budget: Budget | None = None, ahead: Budget | None = None,
                 temporary: bool = False) -> None:
        self.folder = folder
        #: Whether ``folder`` is the temporary folder (TMPDIR), not the output's: a full one
        #: is then reported as such (temp_error).
        self.temporary = temporary
        self.cancel = cancel
        self.budget = budget
        self.ahead_budget = ahead
        self.cond = threading.Condition()
        self.ahead: deque[bytes] = deque()  # read ahead, held in memory
        self.spool: Any = None
        self.spooled = 0  # bytes in the spool
        self.taken = 0  # bytes of the spool the writer has taken
        self.live = not may_spool
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.done = False

    # -- the reader's side ------------------------------------------------------------------

    def write(self, chunk: bytes) -> None:
        with self.cond:
            # In memory while the read-ahead budget allows, and only until the first chunk
            # spooled (the order). The budget's lock is only ever taken inside this one.
            if not self.live and self.spool is None and self.ahead_budget is not None \
                    and self.ahead_budget.try_acquire(len(chunk)):
                self.ahead.append(chunk)
                self.cond.notify_all()
                return
        # Room in the spool budget is waited for without the lock, which the writer needs to
        # make this channel live; if it does meanwhile, the chunk goes in memory instead.
        reserved = not self.live and self.budget is not None and \
            self.budget.acquire(len(chunk), lambda: self.live)
        with self.cond:
            if self.live:
                if reserved:
                    self.budget.release(len(chunk))  # type: ignore[union-attr]
                while self.queued >= LIVE_BYTES:
                    if self.cancel.is_set():
                        raise Cancelled
                    self.cond.wait(0.2)
                self.queue.append(chunk)
                self.queued += len(chunk)
            else:
                try:
                    if self.spool is None:
                        # Unlinked from the start (O_TMPFILE): gone with the process, however it ends.
                        self.spool = tempfile.TemporaryFile(dir=self.folder, buffering=0)  # noqa: SIM115
                    _pwrite_all(self.spool.fileno(), chunk, self.spooled)
                except OSError as exc:
                    if self.temporary:
                        raise temp_error(exc, self.folder, "spooling tables read ahead of the writer") \
                            from None
                    raise
                self.spooled += len(chunk)
            self.cond.notify_all()

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()

    # -- the writer's side ------------------------------------------------------------------

    def chunks(self, check: Callable[[], None]) -> Iterator[bytes]:
        """The part's bytes in order, until its reader has finished; ``check`` raises when
        the export failed elsewhere."""
        while True:
            with self.cond:
                while True:
                    span = None
                    if self.ahead:
                        chunk = self.ahead.popleft()
                        self.ahead_budget.release(len(chunk))  # type: ignore[union-attr]
                        break
                    if self.taken < self.spooled:
                        span = (self.taken, min(COPY_BYTES, self.spooled - self.taken))
                        break
                    if self.queue:
                        chunk = self.queue.popleft()
                        self.queued -= len(chunk)
                        self.cond.notify_all()
                        break
                    if self.done:
                        return
                    self.live = True  # all read ahead is drained: from now on, chunks come live
                    self.cond.wait(0.2)
                    check()
            if span is not None:
                # What is already spooled no longer changes: read it outside the lock.
                chunk = os.pread(self.spool.fileno(), span[1], span[0])
                self.taken += len(chunk)
            yield chunk

    def close(self) -> None:
        """The reader's end: nothing to release (the spool is the writer's to release)."""

    def release(self) -> None:
        """The writer's end: drop what is held (and its share of the budgets)."""
        with self.cond:
            held = sum(len(c) for c in self.ahead)
            self.ahead.clear()
        if held:
            self.ahead_budget.release(held)  # type: ignore[union-attr]
        if self.spool is not None:
            self.spool.close()
            self.spool = None
            if self.budget is not None:
                self.budget.release(self.spooled)
