"""Two-person approval, for the sources with ``approval = true``: an export that would write
protected columns waits for a second admin.

Protected: a deny-listed column included by name (``include_secrets``, the plan marks it
``secret``) and, when the export does not apply the PII preset, every column the preset would
mask (the plan with ``anonymize`` on, compared with the plan as asked). Such an export is not
started: an approval request is stored and answered by another admin, who approves it (the
export starts at once, as the requester's) or refuses it. The requester cannot answer their own.

The audit trail links the three: ``approval.request`` (target ``approval N``, the protected
columns), ``approval.approve`` or ``approval.refuse`` (target ``approval N``, the job's id), and
the job's own ``export.start`` and ``export`` (target ``job J``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..errors import NotFoundError
from . import audit
from .context import HTTPProblem
from .jobs import ExportRequest, options_for
from .state import State, now

SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY,
    requester TEXT NOT NULL,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    request TEXT NOT NULL,
    protected TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'refused')),
    created REAL NOT NULL,
    decided_by TEXT,
    decided REAL,
    job_id INTEGER
);
"""


class ApprovalRequired(HTTPProblem):
    """The export waits for a second admin (the API answers 202 with the request's id)."""

    def __init__(self, approval_id: int, protected: list[str]) -> None:
        shown = ", ".join(protected[:5]) + (f" and {len(protected) - 5} more" if len(protected) > 5 else "")
        super().__init__(409, "approval_required",
                         f"this export writes protected columns ({shown}) and needs a second admin's "
                         f"approval: request {approval_id} (on the Approvals page, or POST "
                         f"/api/approvals/{approval_id}/approve)")
        self.approval_id, self.protected = approval_id, protected


def ensure_schema(state: State) -> None:
    state.create(SCHEMA)


def protected_columns(config: Any, request: ExportRequest) -> list[str]:
    """``table.column (why)`` for each protected column the export would write."""
    from ..exporter import plan

    source = config.sources[request.source]
    asked = plan(options_for(source, "-", request, "", None))
    out = [f"{t.name}.{c.name} (secret, included by name)"
           for t in asked.tables for c in t.columns if c.secret]
    anonymize = source.anonymize if request.anonymize is None else request.anonymize
    if not anonymize:
        masked = plan(options_for(source, "-", replace(request, anonymize=True), "", None))
        rules = {(t.name, c.name): c.rule for t in masked.tables for c in t.columns}
        out += [f"{t.name}.{c.name} (unmasked; the PII preset would {rules[(t.name, c.name)]} it)"
                for t in asked.tables for c in t.columns
                if c.rule == "keep" and rules.get((t.name, c.name), "keep") != "keep"]
    return out


def request_approval(state: State, request: ExportRequest, requester: str, address: str,
                     protected: list[str]) -> int:
    approval_id = state.execute(
        "INSERT INTO approvals (requester, source, destination, request, protected, status, created) "
        "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
        [requester, request.source, request.destination, json.dumps(request.to_json()), json.dumps(protected),
         now()])
    audit.record(state, actor=requester, action="approval.request", target=f"approval {approval_id}",
                 address=address, outcome="pending",
                 detail={"source": request.source, "destination": request.destination,
                         "protected": protected})
    return approval_id


def approval_json(row: Any) -> dict[str, Any]:
    def iso(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace(
            "+00:00", "Z")

    return {"id": row["id"], "status": row["status"], "requester": row["requester"], "source": row["source"],
            "destination": row["destination"], "options": json.loads(row["request"]),
            "protected": json.loads(row["protected"]), "created": iso(row["created"]),
            "decided_by": row["decided_by"], "decided": iso(row["decided"]), "job": row["job_id"]}


def get(state: State, approval_id: int) -> Any:
    row = state.one("SELECT * FROM approvals WHERE id = ?", [approval_id])
    if row is None:
        raise NotFoundError(f"no approval request {approval_id}")
    return row


def listing(state: State, limit: int = 100) -> list[dict[str, Any]]:
    return [approval_json(r) for r in state.all("SELECT * FROM approvals ORDER BY id DESC LIMIT ?", [limit])]


def decide(svc: Any, approval_id: int, approver: str, address: str, approve: bool) -> dict[str, Any]:
    """Approve (and start the export, as the requester's) or refuse a pending request."""
    action = "approval.approve" if approve else "approval.refuse"
    row = get(svc.state, approval_id)
    why = None
    if row["requester"].lower() == approver.lower():
        why = (403, "forbidden", "the requester cannot approve or refuse their own export; ask another admin")
    elif row["status"] != "pending":
        why = (409, "conflict", f"approval request {approval_id} is already {row['status']}")
    if why is not None:
        audit.record(svc.state, actor=approver, action=action, target=f"approval {approval_id}",
                     address=address, outcome="refused", detail={"error": why[2]})
        raise HTTPProblem(*why)
    # Claimed first, so that two admins answering at once cannot both start it.
    changed = svc.state.execute("UPDATE approvals SET status = ?, decided_by = ?, decided = ? "
                                "WHERE id = ? AND status = 'pending'",
                                ["approved" if approve else "refused", approver, now(), approval_id])
    if changed != 1:
        raise HTTPProblem(409, "conflict", f"approval request {approval_id} was answered meanwhile")
    job_id = None
    if approve:
        request = ExportRequest.from_json(json.loads(row["request"]))
        job_id = svc.jobs.start(request, row["requester"], address)
        svc.state.execute("UPDATE approvals SET job_id = ? WHERE id = ?", [job_id, approval_id])
    audit.record(svc.state, actor=approver, action=action, target=f"approval {approval_id}", address=address,
                 detail={"requester": row["requester"], "job": job_id})
    return approval_json(get(svc.state, approval_id))
