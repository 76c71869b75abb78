"""Export jobs: each runs :class:`sqlsnap.exporter.Export` in a worker process (:mod:`.worker`)
watched by a thread of a pool of ``workers``, with its cancel event and the progress the pages
and the API poll.

A job's row in the state database is its record (status, options, summary, error); what it
is doing right now (tables done, rows, bytes) lives in memory while it runs and is written
to the row when it ends, and at each heartbeat of the process that owns it (:mod:`.owners`),
so that other processes sharing the state database show it too. Nothing survives a restart
silently: jobs whose owner is gone (the service stopped, or another process sharing the state
database died) are marked failed at the next start, or at the next heartbeat of a process that
runs, and the hidden temporary file of a local export is removed (the exporter writes under a
temporary name and renames only when complete, so no file under the final name ever existed).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import NotFoundError, SnapError, UsageError
from ..format import SIDECAR_SUFFIX
from ..model import Table
from ..options import ExportOptions, PolicyOptions
from ..urls import mask, parse_url
from . import audit, owners
from .config import COMPRESSIONS, FORMATS, DestinationConfig, ServiceConfig, SourceConfig
from .segment import SegmentRequest
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
    #: ``json`` (one document) or ``jsonl`` (a folder, downloaded as a tar stream).
    format: str = "json"
    #: Which rows; None: the source's default segment (an empty one: the whole database).
    segment: SegmentRequest | None = None
    #: Encrypt to the destination's age recipients; None: when it has some.
    encrypt: bool | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["segment"] = self.segment.to_json() if self.segment is not None else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportRequest:
        """As :meth:`to_json` stored it (requests stored before a field existed get its default)."""
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                                  if k != "segment"}
        segment = data.get("segment")
        return cls(**values, segment=SegmentRequest.from_json(segment) if segment is not None else None)

    def segment_for(self, source: SourceConfig) -> SegmentRequest:
        return source.segment if self.segment is None else self.segment

    def encrypted_for(self, dest: DestinationConfig) -> bool:
        return dest.can_encrypt if self.encrypt is None else self.encrypt


def file_name(database: str, when: datetime, job_id: int, compress: str, fmt: str = "json",
              encrypted: bool = False) -> str:
    """``<database>-export-<UTC time>-<job>.json[.zst|.gz][.age]``, or for JSON Lines the
    folder ``<database>-export-<UTC time>-<job>``: timestamped, and unique even for two
    exports of one database started in the same second."""
    from ..codecs import SUFFIXES
    from ..crypto import SUFFIX as AGE

    stem = os.path.splitext(os.path.basename(database))[0] or "database"
    name = f"{stem}-export-{when.strftime('%Y-%m-%dT%H-%M-%SZ')}-{job_id}"
    if fmt == "jsonl":
        return name
    return f"{name}.json{SUFFIXES[compress]}{AGE if encrypted else ''}"


def options_for(source: SourceConfig, target: str, request: ExportRequest, actor: str,
                dest: DestinationConfig | None) -> ExportOptions:
    """The export's options; ``dest`` None for a plan (no destination, no encryption)."""
    anonymize = source.anonymize if request.anonymize is None else request.anonymize
    segment = request.segment_for(source)
    encrypt = dest is not None and request.encrypted_for(dest)
    return ExportOptions(
        source=source.url, destination=target, format=request.format,
        compress=None if request.compress == "none" else request.compress,
        tables=segment.tables or None,
        exclude_tables=source.exclude_tables + tuple(request.exclude_tables),
        # One reader per export: the service runs several exports and serves pages on the same
        # cores (two readers gained 1.5x alone on 2 cores: bench/README.md, but not beside a
        # second export).
        jobs=1, exported_by=actor, environment=source.environment,
        s3_endpoint=dest.s3_endpoint if dest is not None else None,
        encrypt_to=dest.encrypt_to if encrypt and dest else (),
        encrypt_to_file=dest.encrypt_to_file if encrypt and dest else (),
        policy=PolicyOptions(exclude_columns=source.exclude_columns, anonymize=anonymize,
                             include_secrets=tuple(request.include_secrets),
                             policy=source.policy),
        segment=segment.options(source.segment_file))


def check_request(config: ServiceConfig, request: ExportRequest) -> tuple[SourceConfig, DestinationConfig]:
    """The source and destination of ``request``, after checking everything that needs no
    database: names, compression, format, encryption, the segment (its ``where`` texts parsed).
    UsageError (400) with the fix."""
    source = config.sources.get(request.source)
    if source is None:
        raise UsageError(f"unknown source '{request.source}'; choose one of: "
                         + ", ".join(sorted(config.sources)))
    dest = config.destinations.get(request.destination)
    if dest is None:
        raise UsageError(f"unknown destination '{request.destination}'; choose one of: "
                         + ", ".join(sorted(config.destinations)))
    if request.compress not in COMPRESSIONS:
        raise UsageError(f"unknown compression '{request.compress}'; use one of: " + ", ".join(COMPRESSIONS))
    if request.format not in FORMATS:
        raise UsageError(f"unknown format '{request.format}'; use one of: " + ", ".join(FORMATS))
    encrypt = request.encrypted_for(dest)
    if encrypt and not dest.can_encrypt:
        raise UsageError(f"destination '{dest.name}' names no age recipient to encrypt to; an operator adds "
                         f"encrypt_to = [\"age1...\"] to [destinations.{dest.name}], or choose another")
    if not encrypt and dest.encrypt_required:
        raise UsageError(f"destination '{dest.name}' takes encrypted exports only; leave encryption on")
    if encrypt and request.format == "jsonl":
        raise UsageError("a JSON Lines export cannot be encrypted (it is a folder of files); choose the JSON "
                         "format, or no encryption")
    if request.segment is not None:
        request.segment.check()
    return source, dest


def job_json(row: Any, live: JobProgress | None = None) -> dict[str, Any]:
    """A job as the API shows it (no secret: the source is its name, the options masked)."""
    progress = live.to_json() if live is not None else json.loads(row["progress"] or "{}")
    options, keys = json.loads(row["options"]), row.keys()
    summary = json.loads(row["summary"]) if row["summary"] else None
    started, finished = row["started"], row["finished"]
    return {
        "id": row["id"], "status": row["status"], "actor": row["actor"], "source": row["source"],
        "destination": row["destination"], "path": row["target"],
        # The name a download gets: a JSON Lines folder comes as one tar stream.
        "filename": os.path.basename(row["target"].rstrip("/")) + (".tar" if is_folder(row) else "")
        if row["target"] else None,
        "created": _iso(row["created"]), "started": _iso(started), "finished": _iso(finished),
        "seconds": round(finished - started, 3) if started and finished else None,
        "options": options, "progress": progress, "summary": summary,
        "error": row["error"],
        "format": (row["format"] if "format" in keys else None) or "json",
        # The segment in one line ("" for the whole database); the options hold it as data.
        "segment": (row["segment"] if "segment" in keys else None) or "",
        "encrypted": bool(options.get("encrypt_to") or options.get("encrypt_to_file")),
        "deleted": row["deleted"] is not None,
        # When the service deletes the file (an export with a lifetime, :mod:`.expiry`).
        "expires": _iso(finished + row["expires_after"])
        if finished and "expires_after" in keys and row["expires_after"] else None,
    }


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ensure_schema(state: State) -> None:
    """The jobs table's columns added after its first version."""
    state.ensure_column("jobs", "format", "TEXT")
    state.ensure_column("jobs", "segment", "TEXT")
    # The process that runs the job and when it last said so (:mod:`.owners`), and a cancel
    # asked through another process.
    state.ensure_column("jobs", "owner", "TEXT")
    state.ensure_column("jobs", "heartbeat", "REAL")
    state.ensure_column("jobs", "cancel_requested", "REAL")


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
        #: This process as the owner of its jobs (:mod:`.owners`).
        self.instance = owners.new_instance()
        ensure_schema(state)
        self.recover()
        self._stop = threading.Event()
        self._heart = threading.Thread(target=self._beating, name="sqlsnap-heartbeat", daemon=True)
        self._heart.start()

    def close(self) -> None:
        self._stop.set()
        self._heart.join(10)
        with self._lock:
            for event in self._cancel.values():
                event.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def recover(self) -> list[int]:
        """Mark failed the queued or running jobs whose owner is gone (:func:`.owners.gone`: a
        previous run of the service, or another process that died); remove their temporary
        files. Another live process's jobs are left alone. The ids of the jobs failed here."""
        failed = []
        at = now()
        for row in self.state.all("SELECT * FROM jobs WHERE status IN ('queued', 'running')"):
            if not owners.gone(row["owner"], row["heartbeat"], at, self.instance):
                continue
            # Only if nobody changed it meanwhile: two processes may find the same orphan.
            changed = self.state.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished = ? WHERE id = ? "
                "AND status IN ('queued', 'running') AND COALESCE(heartbeat, -1) = ?",
                [RESTART_ERROR, now(), row["id"], -1 if row["heartbeat"] is None else row["heartbeat"]])
            if changed != 1:
                continue
            _remove_temporary(row["target"])
            audit.record(self.state, actor="service", action="export", target=f"job {row['id']}",
                         outcome="failed", detail={"error": RESTART_ERROR, "owner": row["owner"]})
            failed.append(row["id"])
        return failed

    def _beating(self) -> None:
        while not self._stop.wait(owners.HEARTBEAT_SECONDS):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed beat must not stop the next ones
                logging.getLogger("sqlsnap.service").exception("job heartbeat")

    def beat(self) -> None:
        """Mark this process's jobs alive with their progress, stop those whose cancel was asked
        through another process, and fail the jobs of owners that are gone."""
        with self._lock:
            live = {job_id: p.to_json() for job_id, p in self._progress.items()}
        at = now()
        for job_id, progress in live.items():
            self.state.execute("UPDATE jobs SET heartbeat = ?, progress = ? WHERE id = ? AND owner = ?",
                               [at, json.dumps(progress), job_id, self.instance])
        # Only jobs this process runs can be stopped here (their events): none, no query.
        asked = self.state.all("SELECT id FROM jobs WHERE owner = ? AND cancel_requested IS NOT NULL "
                               "AND status IN ('queued', 'running')", [self.instance]) if live else []
        with self._lock:
            for row in asked:
                if row["id"] in self._cancel:
                    self._cancel[row["id"]].set()
        self.recover()

    # -- starting ------------------------------------------------------------------------------

    def start(self, request: ExportRequest, actor: str, address: str) -> int:
        """Queue an export; its job id. Bad names, options and segments fail here, before
        anything runs (names in a segment are checked against the schema by the export's plan)."""
        source, dest = check_request(self.config, request)
        segment = request.segment_for(source)
        encrypted = request.encrypted_for(dest)
        when = datetime.now(UTC)
        job_id = self.state.execute(
            "INSERT INTO jobs (actor, source, destination, target, options, status, created, format, "
            "segment, owner, heartbeat) VALUES (?, ?, ?, '', '{}', 'queued', ?, ?, ?, ?, ?)",
            [actor, source.name, dest.name, when.timestamp(), request.format, segment.describe(),
             self.instance, now()])
        target = dest.target(file_name(parse_url(source.url).database, when, job_id, request.compress,
                                       request.format, encrypted))
        try:
            options = options_for(source, target, request, actor, dest)
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
                     detail={"source": source.name, "destination": dest.name, "path": target,
                             "format": request.format, "segment": segment.describe() or None,
                             "encrypted": encrypted})
        self._pool.submit(self._run, job_id, options, progress, cancel, actor, address)
        return job_id

    def _run(self, job_id: int, options: ExportOptions, progress: JobProgress, cancel: threading.Event,
             actor: str, address: str) -> None:
        from .worker import run_export

        if cancel.is_set():
            self._end(job_id, "cancelled", progress, error="cancelled before it started", actor=actor,
                      address=address)
            return
        self.state.execute("UPDATE jobs SET status = 'running', started = ?, heartbeat = ? WHERE id = ?",
                           [now(), now(), job_id])
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
        """Ask a queued or running job to stop; False when it is not active. A job of another
        live process is asked through the state database: its owner stops it at its next beat."""
        row = self.row(job_id)
        with self._lock:
            event = self._cancel.get(job_id)
        if row["status"] not in ACTIVE:
            return False
        if event is not None:
            event.set()
            return True
        if owners.gone(row["owner"], row["heartbeat"], now(), self.instance):
            return False
        self.state.execute("UPDATE jobs SET cancel_requested = ? WHERE id = ?", [now(), job_id])
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
        from ..prune import Snapshot, delete_snapshots
        from ..stores import open_store

        dest = self.config.destinations.get(row["destination"])
        endpoint = dest.s3_endpoint if dest else None
        if is_folder(row):
            store, prefix = folder_store(target, endpoint)
            # The manifest first: a folder without it is no snapshot (prune's order).
            delete_snapshots(store, [Snapshot(target, datetime.now(UTC), 0, folder=True, key=prefix)])
        else:
            store, key = open_store(target, s3_endpoint=endpoint)
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
            path = os.path.join(folder, name)
            try:
                if os.path.isdir(path):  # a JSON Lines export's folder
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except OSError:
                pass


def folder_store(target: str, s3_endpoint: str | None) -> tuple[Any, str]:
    """The store holding a JSON Lines export's folder (or S3 prefix) and the folder's key,
    ending in ``/``: a local folder is addressed from its parent (a store rooted at the
    folder itself could not delete it)."""
    from ..stores import open_store

    if "://" in target:
        store, key = open_store(target, s3_endpoint=s3_endpoint)
        return store, key.rstrip("/") + "/"
    parent, name = os.path.split(target.rstrip("/"))
    store, key = open_store(parent + "/", s3_endpoint=s3_endpoint)
    return store, (key.rstrip("/") + "/" if key.rstrip("/") else "") + name + "/"


def is_folder(row: Any) -> bool:
    """Whether the job's output is a JSON Lines folder (or S3 prefix), not one file."""
    return bool(row["format"] == "jsonl") if "format" in row.keys() else False
