"""What the API and the pages both do, each action recorded in the audit trail: start,
cancel, download, verify and delete an export; show a source's plan."""

from __future__ import annotations

import os
from typing import Any

from ..errors import NotFoundError, SnapError, VerifyError
from ..urls import mask
from . import audit
from .auth import User
from .config import ServiceConfig
from .context import HTTPProblem, Service
from .jobs import ExportRequest, options_for


def sources_json(config: ServiceConfig) -> dict[str, Any]:
    return {"sources": [{"name": s.name, "url": s.shown_url, "environment": s.environment,
                         "policy": os.path.basename(s.policy) if s.policy else None, "anonymize": s.anonymize}
                        for s in config.sources.values()],
            "destinations": [{"name": d.name, "location": d.location} for d in config.destinations.values()]}


def plan_json(config: ServiceConfig, source_name: str, anonymize: bool | None = None) -> dict[str, Any]:
    """The plan an export of ``source_name`` would follow: its tables with estimated rows, the
    columns left out or masked and why, and the security notices."""
    from ..exporter import plan

    source = config.sources.get(source_name)
    if source is None:
        raise HTTPProblem(404, "not_found", f"unknown source '{source_name}'; choose one of: "
                          + ", ".join(sorted(config.sources)))
    options = options_for(source, "-", ExportRequest(source_name, "", anonymize=anonymize), "", None)
    return plan(options).to_json()


def start(svc: Service, request: ExportRequest, user: User, addr: str) -> int:
    """Start an export; :class:`.approvals.ApprovalRequired` when it waits for a second admin."""
    source = svc.config.sources.get(request.source)
    if source is not None and source.approval:
        from . import approvals

        try:
            protected = approvals.protected_columns(svc.config, request)
        except SnapError as exc:
            audit.record(svc.state, actor=user.email, action="export.start", address=addr, outcome="refused",
                         detail={"source": request.source, "destination": request.destination,
                                 "error": mask(str(exc))})
            raise
        if protected:
            raise approvals.ApprovalRequired(
                approvals.request_approval(svc.state, request, user.email, addr, protected), protected)
    try:
        return svc.jobs.start(request, user.email, addr)
    except SnapError as exc:
        audit.record(svc.state, actor=user.email, action="export.start", address=addr, outcome="refused",
                     detail={"source": request.source, "destination": request.destination,
                             "error": mask(str(exc))})
        raise


def job(svc: Service, job_id: int) -> dict[str, Any]:
    return svc.jobs.get(job_id)


def cancel(svc: Service, job_id: int, user: User, addr: str) -> dict[str, Any]:
    asked = svc.jobs.cancel(job_id)
    audit.record(svc.state, actor=user.email, action="export.cancel", target=f"job {job_id}", address=addr,
                 outcome="ok" if asked else "refused")
    if not asked:
        raise HTTPProblem(409, "conflict", f"export {job_id} is not running")
    return svc.jobs.get(job_id)


def download(svc: Service, job_id: int, user: User, addr: str) -> tuple[str, str, str]:
    """("file", path, filename) or ("url", presigned URL, filename)."""
    try:
        row, target = svc.jobs.finished_file(job_id)
        filename = os.path.basename(target)
        if target.startswith("s3://"):
            where = _presign(svc, row["destination"], target)
            kind = "url"
        else:
            if not os.path.isfile(target):
                raise NotFoundError(f"the file of export {job_id} is gone from {target}", job=job_id)
            kind, where = "file", target
    except SnapError as exc:
        audit.record(svc.state, actor=user.email, action="download", target=f"job {job_id}", address=addr,
                     outcome="failed", detail={"error": mask(str(exc))})
        raise
    audit.record(svc.state, actor=user.email, action="download", target=f"job {job_id}", address=addr,
                 detail={"path": target})
    return kind, where, filename


def _presign(svc: Service, destination: str, target: str) -> str:
    import boto3
    from botocore.config import Config

    from ..stores.s3 import endpoint_from_env, make_client, parse_s3_url

    dest = svc.config.destinations.get(destination)
    loc = parse_s3_url(target)
    endpoint = (dest.s3_endpoint if dest else None) or endpoint_from_env()
    base = make_client(endpoint)
    # Signature version 4: the link says how long it lives (X-Amz-Expires) and AWS refuses
    # version 2 in newer regions.
    client = boto3.session.Session().client("s3", endpoint_url=endpoint,
                                            config=base.meta.config.merge(Config(signature_version="s3v4")))
    url: str = client.generate_presigned_url("get_object", Params={"Bucket": loc.bucket, "Key": loc.key},
                                             ExpiresIn=svc.config.security.presign_seconds)
    return url


def verify(svc: Service, job_id: int, user: User, addr: str) -> dict[str, Any]:
    """Verify the export's file; ``{"ok": ..., ...}`` (a damaged file is a result, not an error)."""
    from ..snapshot import verify as verify_snapshot

    row, target = svc.jobs.finished_file(job_id)
    dest = svc.config.destinations.get(row["destination"])
    try:
        result = verify_snapshot(target, s3_endpoint=dest.s3_endpoint if dest else None)
        out: dict[str, Any] = {"ok": result.ok, "tables": len(result.tables), "rows": result.total_rows,
                               "sha256": result.sha256, "checksum_file": result.checksum_file}
    except VerifyError as exc:
        out = {"ok": False, "error": mask(str(exc))}
    audit.record(svc.state, actor=user.email, action="verify", target=f"job {job_id}", address=addr,
                 outcome="ok" if out["ok"] else "failed", detail={k: v for k, v in out.items() if k != "ok"})
    return out


def delete(svc: Service, job_id: int, user: User, addr: str) -> None:
    try:
        svc.jobs.delete(job_id)
    except SnapError as exc:
        audit.record(svc.state, actor=user.email, action="delete", target=f"job {job_id}", address=addr,
                     outcome="failed", detail={"error": mask(str(exc))})
        raise
    audit.record(svc.state, actor=user.email, action="delete", target=f"job {job_id}", address=addr)
