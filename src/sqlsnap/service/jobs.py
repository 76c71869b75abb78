"""Export jobs: each runs :class:`sqlsnap.exporter.Export` in a worker process (:mod:`.worker`)
watched by a thread of a pool of ``workers``, with its cancel event and the progress the pages
and the API poll.

A job's row in the state database is its record (status, options, summary, error); what it
is doing right now (tables done, rows, bytes) lives in memory while it runs and is written
to the row when it ends. Nothing survives a restart silently: jobs that were queued or
running when the service stopped are marked failed at the next start, and the hidden
temporary file of a local export is removed (the exporter writes under a temporary name
and renames only when complete, so no file under the final name ever existed).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import NotFoundError, SnapError, UsageError
from ..format import SIDECAR_SUFFIX
from ..model import Table
from ..options import ExportOptions, PolicyOptions
from ..urls import mask, parse_url
from . import audit
from .config import COMPRESSIONS, ServiceConfig, SourceConfig
from .state import State, now

#: Job states. ``succeeded`` jobs may later be ``deleted`` (their file removed).
ACTIVE = ("queued", "running")
RESTART_ERROR = "the service stopped while this export ran; its partial output was removed"


@dataclass
class JobProgress:
    """Thread-safe progress of one export (the exporter's ``Progress`` protocol)."""

    tables_total: int = 0
    tables_done: int = 0
    rows: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self, tables: Sequence[Table]) -> None:
        with self._lock:
            self.tables_total = len(tables)

    def advance(self, table: str, rows: int, nbytes: int) -> None:
        with self._lock:
            self.rows += rows
            self.bytes += nbytes

    def table_done(self, table: str, rows: int, nbytes: int) -> None:
        with self._lock:
            self.tables_done += 1

    def finish(self) -> None:
        pass

    def update(self, values: dict[str, int]) -> None:
        """Progress reported by the worker process."""
        with self._lock:
            self.tables_total, self.tables_done = values["tables_total"], values["tables_done"]
            self.rows, self.bytes = values["rows"], values["bytes"]

    def to_json(self) -> dict[str, int]:
        with self._lock:
            return {"tables_total": self.tables_total, "tables_done": self.tables_done, "rows": self.rows,
                    "bytes": self.bytes}


@dataclass(frozen=True)
class ExportRequest:
    source: str
    destination: str
    compress: str = "zstd"
    anonymize: bool | None = None
    exclude_tables: tuple[str, ...] = ()
    #: Deny-listed columns exported on purpose (``--include-secret``); needs approval where the
    #: source asks for it (:mod:`.approvals`).
    include_secrets: tuple[str, ...] = ()
    #: Seconds after its end when the service deletes the file (:mod:`.expiry`); None: kept.
    lifetime_seconds: float | None = None


def file_name(database: str, when: datetime, job_id: int, compress: str) -> str:
    """``<database>-export-<UTC time>-<job>.json[.zst|.gz]``: timestamped, and unique even for
    two exports of one database started in the same second."""
    from ..codecs import SUFFIXES

    stem = os.path.splitext(os.path.basename(database))[0] or "database"
    return f"{stem}-export-{when.strftime('%Y-%m-%dT%H-%M-%SZ')}-{job_id}.json{SUFFIXES[compress]}"


def options_for(source: SourceConfig, target: str, request: ExportRequest, actor: str,
                s3_endpoint: str | None) -> ExportOptions:
    anonymize = source.anonymize if request.anonymize is None else request.anonymize
    return ExportOptions(
        source=source.url, destination=target, format="json",
        compress=None if request.compress == "none" else request.compress,
        exclude_tables=source.exclude_tables + tuple(request.exclude_tables),
        # One reader per export: the service runs several exports and serves pages on the same
        # cores (two readers gained 1.5x alone on 2 cores: bench/README.md, but not beside a
        # second export).
        jobs=1, exported_by=actor, environment=source.environment, s3_endpoint=s3_endpoint,
        policy=PolicyOptions(exclude_columns=source.exclude_columns, anonymize=anonymize,
                             include_secrets=tuple(request.include_secrets),
                             policy=source.policy))


def job_json(row: Any, live: JobProgress | None = None) -> dict[str, Any]:
    """A job as the API shows it (no secret: the source is its name, the options masked)."""
    progress = live.to_json() if live is not None else json.loads(row["progress"] or "{}")
    summary = json.loads(row["summary"]) if row["summary"] else None
    started, finished = row["started"], row["finished"]
    return {
        "id": row["id"], "status": row["status"], "actor": row["actor"], "source": row["source"],
        "destination": row["destination"], "path": row["target"],
        "filename": os.path.basename(row["target"]) if row["target"] else None,
        "created": _iso(row["created"]), "started": _iso(started), "finished": _iso(finished),
        "seconds": round(finished - started, 3) if started and finished else None,
        "options": json.loads(row["options"]), "progress": progress, "summary": summary,
        "error": row["error"],
        "deleted": row["deleted"] is not None,
        # When the service deletes the file (an export with a lifetime, :mod:`.expiry`).
        "expires": _iso(finished + row["expires_after"])
        if finished and "expires_after" in row.keys() and row["expires_after"] else None,
    }


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Jobs:
    """Starts, tracks and cancels export jobs, ``config.workers`` at a time."""

    def __init__(self, config: ServiceConfig, state: State) -> None:
        self.config, self.state = config, state
        self._pool = ThreadPoolExecutor(max_workers=max(1, config.workers),
                                        thread_name_prefix="sqlsnap-export")
        self._cancel: dict[int, threading.Event] = {}
        self._progress: dict[int, JobProgress] = {}
        self._lock = threading.Lock()
        #: Called with the job's id when a job has ended (schedules' retention, notifications).
        self.on_end: list[Callable[[int], None]] = []
        self.recover()

    def close(self) -> None:
        with self._lock:
            for event in self._cancel.values():
                event.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def recover(self) -> None:
        """Mark the jobs a previous run left queued or running as failed; remove their
        temporary files."""
        for row in self.state.all("SELECT * FROM jobs WHERE status IN ('queued', 'running')"):
            _remove_temporary(row["target"])
            self.state.execute("UPDATE jobs SET status = 'failed', error = ?, finished = ? WHERE id = ?",
                               [RESTART_ERROR, now(), row["id"]])
            audit.record(self.state, actor="service", action="export", target=f"job {row['id']}",
                         outcome="failed", detail={"error": RESTART_ERROR})

    # -- starting ------------------------------------------------------------------------------

    def start(self, request: ExportRequest, actor: str, address: str) -> int:
        """Queue an export; its job id. Bad names fail here, before anything runs."""
        source = self.config.sources.get(request.source)
        if source is None:
            raise UsageError(f"unknown source '{request.source}'; choose one of: "
                             + ", ".join(sorted(self.config.sources)))
        dest = self.config.destinations.get(request.destination)
        if dest is None:
            raise UsageError(f"unknown destination '{request.destination}'; choose one of: "
                             + ", ".join(sorted(self.config.destinations)))
        if request.compress not in COMPRESSIONS:
            raise UsageError(f"unknown compression '{request.compress}'; use one of: "
                             + ", ".join(COMPRESSIONS))
        when = datetime.now(UTC)
        job_id = self.state.execute(
            "INSERT INTO jobs (actor, source, destination, target, options, status, created) "
            "VALUES (?, ?, ?, '', '{}', 'queued', ?)", [actor, source.name, dest.name, when.timestamp()])
        target = dest.target(file_name(parse_url(source.url).database, when, job_id, request.compress))
        options = options_for(source, target, request, actor, dest.s3_endpoint)
        try:
            options.check()
        except SnapError as exc:
            self.state.execute("UPDATE jobs SET status = 'failed', error = ?, finished = ? WHERE id = ?",
                               [mask(str(exc)), now(), job_id])
            raise
        shown = options.to_json()
        self.state.execute("UPDATE jobs SET target = ?, options = ? WHERE id = ?",
                           [target, json.dumps(shown), job_id])
        if request.lifetime_seconds:
            self.state.execute("UPDATE jobs SET expires_after = ? WHERE id = ?",
                               [request.lifetime_seconds, job_id])
        progress, cancel = JobProgress(), threading.Event()
        with self._lock:
            self._progress[job_id], self._cancel[job_id] = progress, cancel
        audit.record(self.state, actor=actor, action="export.start", target=f"job {job_id}", address=address,
                     detail={"source": source.name, "destination": dest.name, "path": target})
        self._pool.submit(self._run, job_id, options, progress, cancel, actor, address)
        return job_id

    def _run(self, job_id: int, options: ExportOptions, progress: JobProgress, cancel: threading.Event,
             actor: str, address: str) -> None:
        from .worker import run_export

        if cancel.is_set():
            self._end(job_id, "cancelled", progress, error="cancelled before it started", actor=actor,
                      address=address)
            return
        self.state.execute("UPDATE jobs SET status = 'running', started = ? WHERE id = ?", [now(), job_id])
        try:
            status, payload = run_export(options, cancel, progress.update, self.config.export_nice)
        except Exception as exc:  # noqa: BLE001 - a failure to start the worker must end the job
            status, payload = "failed", f"the export process could not start ({type(exc).__name__}: {exc})"
        finally:
            with self._lock:
                self._progress.pop(job_id, None)
                self._cancel.pop(job_id, None)
        if status == "succeeded":
            self._end(job_id, status, progress, summary=payload, actor=actor, address=address)
        else:
            # A worker that died (out of memory, killed) could not remove its temporary file.
            _remove_temporary(options.destination or "")
            self._end(job_id, status, progress, error=str(payload), actor=actor, address=address)

    def _end(self, job_id: int, status: str, progress: JobProgress, *, actor: str, address: str,
             summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        self.state.execute("UPDATE jobs SET status = ?, finished = ?, progress = ?, summary = ?, error = ? "
                           "WHERE id = ?", [status, now(), json.dumps(progress.to_json()),
                                            json.dumps(summary) if summary else None, error, job_id])
        detail: dict[str, Any] = {"error": error} if error else {
            "path": (summary or {}).get("path"), "bytes": (summary or {}).get("bytes"),
            "sha256": (summary or {}).get("sha256")}
        audit.record(self.state, actor=actor, action="export", target=f"job {job_id}", address=address,
                     outcome={"succeeded": "ok"}.get(status, status), detail=detail)
        for listener in self.on_end:
            try:
                listener(job_id)
            except Exception:  # noqa: BLE001 - a listener's bug must not lose the job's end
                logging.getLogger("sqlsnap.service").exception("after job %s", job_id)

    # -- reading, cancelling, deleting ---------------------------------------------------------

    def row(self, job_id: int) -> Any:
        row = self.state.one("SELECT * FROM jobs WHERE id = ?", [job_id])
        if row is None:
            raise NotFoundError(f"no export job {job_id}", job=job_id)
        return row

    def get(self, job_id: int) -> dict[str, Any]:
        row = self.row(job_id)
        with self._lock:
            live = self._progress.get(job_id)
        return job_json(row, live if row["status"] in ACTIVE else None)

    def history(self, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
        rows = self.state.all("SELECT * FROM jobs WHERE id < ? ORDER BY id DESC LIMIT ?",
                              [before if before is not None else 2**62, limit])
        with self._lock:
            live = dict(self._progress)
        return [job_json(r, live.get(r["id"]) if r["status"] in ACTIVE else None) for r in rows]

    def cancel(self, job_id: int) -> bool:
        """Ask a queued or running job to stop; False when it is not active."""
        row = self.row(job_id)
        with self._lock:
            event = self._cancel.get(job_id)
        if row["status"] not in ACTIVE or event is None:
            return False
        event.set()
        return True

    def finished_file(self, job_id: int) -> tuple[Any, str]:
        """(row, path) of a succeeded job whose file still exists; NotFoundError otherwise."""
        row = self.row(job_id)
        if row["status"] != "succeeded" or row["deleted"] is not None:
            state = "deleted" if row["deleted"] is not None else row["status"]
            raise NotFoundError(f"export {job_id} has no file to download (it is {state})", job=job_id)
        return row, row["target"]

    def delete(self, job_id: int) -> None:
        """Remove a finished export's file and checksum file; the job stays in history."""
        row, target = self.finished_file(job_id)
        from ..stores import open_store

        dest = self.config.destinations.get(row["destination"])
        store, key = open_store(target, s3_endpoint=dest.s3_endpoint if dest else None)
        keys = [k for k in (key, key + SIDECAR_SUFFIX) if store.exists(k)]
        if keys:
            store.delete(keys)
        self.state.execute("UPDATE jobs SET deleted = ? WHERE id = ?", [now(), job_id])


def _remove_temporary(target: str) -> None:
    """Remove the hidden temporary files of a local export that a stopped service left."""
    if not target or "://" in target:
        return
    from ..stores.file import TEMP_NAME

    folder, base = os.path.split(target)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return
    for name in names:
        if name.startswith(f".{base}.") and TEMP_NAME.match(name):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
