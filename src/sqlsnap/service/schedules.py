"""Scheduled exports: ``[schedules.NAME]`` in the configuration, run by a loop in the service.

Exactly one run per due time, however many service processes share the state database: a
process runs a due time only when it is the one whose row ``(schedule, due)`` went into the
``schedule_runs`` table (a UNIQUE key; the others' INSERT is ignored). Each process ticks
every second, so a run starts at most about a second after its due time.

A due time that passed while no service ran (it is before this process started) is *missed*:
with ``missed = "run"`` (the default) the latest such time is run once at start, with
``missed = "skip"`` it is only recorded; either way the audit trail says how many were missed.
A schedule seen for the first time counts from the start of the service, not from the past.

A scheduled run is an ordinary export job (actor ``schedule:NAME``): it is in the history and
the audit trail like one started by hand; after a successful run the schedule's retention
rules prune the destination (:mod:`.retention`).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ..errors import SnapError
from ..urls import mask
from . import audit
from .schedule_config import ScheduleConfig
from .state import State, now

log = logging.getLogger("sqlsnap.service.schedules")

#: Due times enumerated at most per check: a minutely schedule down for a week has 10 080;
#: beyond this many only the count is approximate ("at least").
MAX_DUE = 10_000
TICK_SECONDS = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedule_runs (
    id INTEGER PRIMARY KEY,
    schedule TEXT NOT NULL,
    due REAL NOT NULL,
    status TEXT NOT NULL,
    job_id INTEGER,
    missed INTEGER NOT NULL DEFAULT 0,
    claimed REAL NOT NULL,
    UNIQUE (schedule, due)
);
"""


class Due(NamedTuple):
    #: The latest due time passed (POSIX seconds).
    at: float
    #: Due times that will not run (earlier ones, and this one when skipped).
    missed: int
    run: bool


class Scheduler:
    """Starts the exports of the configured schedules when they are due, once per due time
    across every process sharing the state database; applies retention after a scheduled
    export succeeded."""

    def __init__(self, service: Any, started: float | None = None) -> None:
        from .jobs import Jobs

        self.config = service.config
        self.state: State = service.state
        self.jobs: Jobs = service.jobs
        self.started = now() if started is None else started
        self.state.create(SCHEMA)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.jobs.on_end.append(self._job_ended)

    def start(self) -> None:
        # Also when no schedule is configured: the loop expires exports with a lifetime.
        self._thread = threading.Thread(target=self._loop, name="sqlsnap-scheduler", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        from . import expiry

        while not self._stop.is_set():
            try:
                self.run_due(time.time())
            except Exception:  # noqa: BLE001 - one bad check must not stop the schedules
                log.exception("checking the schedules failed")
            try:
                expiry.sweep(self.jobs, self.state)
            except Exception:  # noqa: BLE001 - nor one bad sweep
                log.exception("expiring exports failed")
            self._stop.wait(TICK_SECONDS)

    def run_due(self, at: float) -> list[int]:
        """Start what is due at ``at`` (a POSIX time); the ids of the jobs started here."""
        started = []
        for schedule in self.config.schedules.values():
            job_id = self._check(schedule, at)
            if job_id is not None:
                started.append(job_id)
        return started

    def _check(self, schedule: ScheduleConfig, at: float) -> int | None:
        due = self.due(schedule, at)
        if due is None or not self.claim(schedule, due):
            return None  # nothing due, or another process has it
        return self._run(schedule, due, at)

    def due(self, schedule: ScheduleConfig, at: float) -> Due | None:
        """What of ``schedule`` is due at ``at`` since its last claimed due time, if anything."""
        last = self.state.one("SELECT MAX(due) AS due FROM schedule_runs WHERE schedule = ?", [schedule.name])
        base = last["due"] if last and last["due"] is not None else self.started
        due: list[float] = []
        t = base
        while len(due) < MAX_DUE:
            t = schedule.next_due(t)
            if t > at:
                break
            due.append(t)
        if not due:
            return None
        latest = due[-1]
        down = latest < self.started  # no service ran at that time
        run = not down or schedule.missed == "run"
        # The earlier due times never run (one catch-up run is enough); the latest is missed
        # too when it passed while the service was down and the schedule says skip.
        missed = len(due) - 1 + (0 if run else 1)
        return Due(latest, missed, run)

    def claim(self, schedule: ScheduleConfig, due: Due) -> bool:
        """Whether this process is the one that runs (or records) ``due``: the one whose row
        went in; the UNIQUE (schedule, due) key ignores the others'."""
        with self.state.transaction() as db:
            # ON CONFLICT DO NOTHING: SQLite (3.24+) and PostgreSQL alike.
            cur = db.execute("INSERT INTO schedule_runs (schedule, due, status, missed, claimed) "
                             "VALUES (?, ?, ?, ?, ?) ON CONFLICT (schedule, due) DO NOTHING",
                             [schedule.name, due.at, "starting" if due.run else "missed", due.missed, now()])
            return bool(cur.rowcount == 1)

    def _run(self, schedule: ScheduleConfig, due: Due, at: float) -> int | None:
        latest, missed, run = due
        due_iso = _iso(latest)
        if missed:
            audit.record(self.state, actor=schedule.actor, action="schedule.missed", target=schedule.name,
                         outcome="missed", detail={"missed": missed, "until": due_iso,
                                                   "policy": schedule.missed})
        if not run:
            return None
        from .jobs import ExportRequest

        request = ExportRequest(schedule.source, schedule.destination, schedule.compress, schedule.anonymize,
                                schedule.exclude_tables)
        try:
            job_id = self.jobs.start(request, schedule.actor, "")
        except SnapError as exc:
            self.state.execute("UPDATE schedule_runs SET status = 'failed' WHERE schedule = ? AND due = ?",
                               [schedule.name, latest])
            audit.record(self.state, actor=schedule.actor, action="schedule.run", target=schedule.name,
                         outcome="failed", detail={"due": due_iso, "error": mask(str(exc))})
            return None
        self.state.execute("UPDATE schedule_runs SET status = 'started', job_id = ? "
                           "WHERE schedule = ? AND due = ?", [job_id, schedule.name, latest])
        audit.record(self.state, actor=schedule.actor, action="schedule.run", target=schedule.name,
                     detail={"due": due_iso, "job": job_id, "late_seconds": round(at - latest, 1)})
        return job_id

    def _job_ended(self, job_id: int) -> None:
        run = self.state.one("SELECT schedule FROM schedule_runs WHERE job_id = ?", [job_id])
        if run is None:
            return
        schedule = self.config.schedules.get(run["schedule"])
        row = self.jobs.row(job_id)
        if schedule is None or row["status"] != "succeeded" or not schedule.retention:
            return
        from .retention import apply

        apply(self.config, self.state, schedule, row)

    def runs(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.state.all("SELECT * FROM schedule_runs WHERE schedule = ? ORDER BY due DESC LIMIT ?",
                              [name, limit])
        return [{"due": _iso(r["due"]), "status": r["status"], "job": r["job_id"], "missed": r["missed"]}
                for r in rows]

    def to_json(self) -> list[dict[str, Any]]:
        out = []
        for schedule in self.config.schedules.values():
            last = self.state.one("SELECT MAX(due) AS due FROM schedule_runs WHERE schedule = ?",
                                  [schedule.name])
            base = max(time.time(), last["due"] if last and last["due"] is not None else 0)
            out.append({**schedule.to_json(), "next_due": _iso(schedule.next_due(base)),
                        "runs": self.runs(schedule.name)})
        return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

