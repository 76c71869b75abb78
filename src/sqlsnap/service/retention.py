"""Retention after a scheduled export: :func:`sqlsnap.prune.prune` (the library's one
deleter, for local folders and S3 alike) over the snapshots of the schedule's source in its
destination, with the schedule's rules; what it deleted goes to the audit trail.

The prefix is the exported file's name up to ``-export-`` (``<database>-export-``): every
snapshot of that database in that destination counts, whether a schedule or a person made
it. A schedule whose snapshots must be counted apart gets a destination of its own.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import SnapError
from ..urls import mask
from . import audit
from .config import ServiceConfig
from .state import State, now

log = logging.getLogger("sqlsnap.service.retention")

MARK = "-export-"


def prefix_of(target: str) -> str:
    """``.../<database>-export-`` of an export's target path or URL."""
    return target[: target.rindex(MARK) + len(MARK)]


def apply(config: ServiceConfig, state: State, schedule: Any, row: Any) -> dict[str, Any] | None:
    """Prune after the successful job ``row`` of ``schedule``; the audit detail, or None when
    it failed (recorded too: a failed prune never fails the export that ran)."""
    from ..prune import prune

    rules = schedule.retention
    dest = config.destinations.get(row["destination"])
    prefix = prefix_of(row["target"])
    try:
        result = prune(prefix, keep_last=rules.keep_last, older_than=rules.max_age,
                       keep_daily=rules.keep_daily, keep_weekly=rules.keep_weekly,
                       keep_monthly=rules.keep_monthly, s3_endpoint=dest.s3_endpoint if dest else None)
    except SnapError as exc:
        audit.record(state, actor=schedule.actor, action="retention", target=schedule.name, outcome="failed",
                     detail={"prefix": prefix, "job": row["id"], "error": mask(str(exc))})
        return None
    detail = {"prefix": prefix, "job": row["id"], "rules": rules.to_json(), "kept": len(result.kept),
              "deleted": [s.name for s in result.deleted],
              "deleted_bytes": sum(s.size for s in result.deleted)}
    audit.record(state, actor=schedule.actor, action="retention", target=schedule.name, detail=detail)
    if result.deleted:
        _mark_deleted(state, [s.name for s in result.deleted])
    return detail


def _mark_deleted(state: State, names: list[str]) -> None:
    """The history says which exports' files retention removed."""
    for name in names:
        state.execute("UPDATE jobs SET deleted = ? WHERE target = ? AND deleted IS NULL", [now(), name])
