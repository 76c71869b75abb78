"""Exports with a lifetime: "export, analyse, delete". An export started with a lifetime (the
export form's "Delete after", the API's ``lifetime``) has its file and checksum file deleted by
the service once the lifetime has passed since it finished; the history shows it as deleted
with the time it expired, and the audit trail holds an ``expire`` entry by ``service``.

The sweep runs in the service's scheduler thread every ``SWEEP_SECONDS``; with several service
processes, the first to delete a file records it, the others find it gone and skip it.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import NotFoundError, SnapError
from ..urls import mask
from . import audit
from .state import State, now

log = logging.getLogger("sqlsnap.service.expiry")

#: How often expired files are looked for: a lifetime is hours or days; seconds for the tests.
SWEEP_SECONDS = 1.0
#: What the export form offers ("" keeps the file until someone deletes it).
FORM_LIFETIMES = {"": "keep", "1h": "1 hour", "1d": "1 day", "7d": "7 days", "30d": "30 days"}


def ensure_schema(state: State) -> None:
    """The jobs table's ``expires_after`` column (seconds after the end), added when missing."""
    state.ensure_column("jobs", "expires_after", "REAL")


def lifetime_seconds(text: str | None) -> float | None:
    """``"7d"`` as seconds; None for no lifetime. UsageError for a bad age."""
    from ..prune import parse_age

    if not text:
        return None
    return parse_age(text).total_seconds()


def sweep(jobs: Any, state: State) -> list[int]:
    """Delete the files whose lifetime has passed; their job ids."""
    rows = state.all("SELECT id, target, expires_after FROM jobs WHERE status = 'succeeded' "
                     "AND deleted IS NULL AND expires_after IS NOT NULL AND finished + expires_after <= ?",
                     [now()])
    done = []
    for row in rows:
        try:
            jobs.delete(row["id"])
        except NotFoundError:
            continue  # another process expired it meanwhile
        except SnapError as exc:
            audit.record(state, actor="service", action="expire", target=f"job {row['id']}", outcome="failed",
                         detail={"path": row["target"], "error": mask(str(exc))})
            continue
        audit.record(state, actor="service", action="expire", target=f"job {row['id']}",
                     detail={"path": row["target"], "lifetime_seconds": row["expires_after"]})
        done.append(row["id"])
    return done
