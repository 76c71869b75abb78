"""One export in a worker process of its own, so that the web server keeps its interpreter.

Measured with bench/service.py (bench/README.md): with the exports on threads of the server's
process, two exports held the GIL so much that 50 polling API clients got their answers after
1.4 s at the median and the history page after 330 ms; in their own processes the server only
relays progress.

The parent (a thread of :class:`sqlsnap.service.jobs.Jobs`) and the child talk over two
one-way pipes: the child sends progress (at most every 0.1 s, and at each table's end) and
then one outcome; the parent sends ``"cancel"``. When the service process dies, its end of the
control pipe closes and the child cancels its export too, so the exporter removes its
temporary file itself (a restart still marks such jobs failed: :meth:`Jobs.recover`).

Processes come from a ``forkserver`` (a clean process that forks the workers), not a fork of
the server with its threads and locks; the child gets the server's environment as it is when
the export starts (credentials, ``SQLSNAP_HASH_KEY``), not as it was when the fork server started.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import Interrupted, SnapError
from ..model import Table
from ..options import ExportOptions
from ..urls import mask

#: Progress messages at most this often: the page polls every second, the API clients more.
PROGRESS_SECONDS = 0.1

_context: Any = None


def context() -> Any:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        # The fork server imports the exporter once; each worker forked from it starts at once.
        _context.set_forkserver_preload(["sqlsnap.exporter"])
    return _context


class _PipeProgress:
    """The exporter's ``Progress``, sent to the parent (thread-safe: readers call it)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.state = {"tables_total": 0, "tables_done": 0, "rows": 0, "bytes": 0}
        self.sent = 0.0

    def _send(self, force: bool = False) -> None:
        if force or time.monotonic() - self.sent >= PROGRESS_SECONDS:
            self.conn.send(("progress", dict(self.state)))
            self.sent = time.monotonic()

    def start(self, tables: Sequence[Table]) -> None:
        with self.lock:
            self.state["tables_total"] = len(tables)
            self._send(force=True)

    def advance(self, table: str, rows: int, nbytes: int) -> None:
        with self.lock:
            self.state["rows"] += rows
            self.state["bytes"] += nbytes
            self._send()

    def table_done(self, table: str, rows: int, nbytes: int) -> None:
        with self.lock:
            self.state["tables_done"] += 1
            self._send(force=True)

    def finish(self) -> None:
        with self.lock:
            self._send(force=True)


def _child(options: ExportOptions, environ: Mapping[str, str], nice: int, progress_conn: Any,
           control_conn: Any) -> None:
    from ..exporter import Export

    os.environ.clear()
    os.environ.update(environ)
    os.nice(nice)
    cancel = threading.Event()

    def watch() -> None:
        try:
            control_conn.recv()  # "cancel"; EOFError when the service is gone
        except (EOFError, OSError):
            pass
        cancel.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        result = Export(options, progress=_PipeProgress(progress_conn), cancel=cancel).run()
    except Interrupted:
        outcome: tuple[str, Any] = ("cancelled", "cancelled; no file was left")
    except SnapError as exc:
        outcome = ("failed", mask(str(exc)))
    except Exception as exc:  # noqa: BLE001 - a bug must end the job with a message
        detail = mask(" ".join(str(exc).split()))[:300]
        outcome = ("failed", f"internal error ({type(exc).__name__}: {detail})")
    else:
        summary = result.summary()
        summary["bytes_per_table"] = {name: t.bytes for name, t in result.tables.items()}
        outcome = ("succeeded", summary)
    progress_conn.send(outcome)
    progress_conn.close()


def run_export(options: ExportOptions, cancel: threading.Event,
               on_progress: Callable[[dict[str, int]], None], nice: int = 0) -> tuple[str, Any]:
    """Run the export in a worker process at ``nice`` (added to the service's niceness);
    ``("succeeded", summary)``, ``("cancelled", why)`` or ``("failed", message)``. Setting
    ``cancel`` stops it."""
    ctx = context()
    progress_in, progress_out = ctx.Pipe(duplex=False)
    control_in, control_out = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(options, dict(os.environ), nice, progress_out, control_in),
                       name="sqlsnap-export")
    proc.start()
    progress_out.close()
    control_in.close()
    outcome: tuple[str, Any] | None = None
    asked = False
    try:
        while outcome is None:
            if cancel.is_set() and not asked:
                control_out.send("cancel")
                asked = True
            if progress_in.poll(0.1):
                try:
                    kind, payload = progress_in.recv()
                except EOFError:
                    break
                if kind == "progress":
                    on_progress(payload)
                else:
                    outcome = (kind, payload)
    finally:
        control_out.close()
        proc.join()
        progress_in.close()
    if outcome is None:
        return "failed", (f"the export process ended unexpectedly (exit code {proc.exitcode}); "
                          "no file was left")
    return outcome
