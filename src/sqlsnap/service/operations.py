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
from .jobs import ExportRequest, check_request, is_folder, options_for
from .segment import SegmentRequest


def sources_json(config: ServiceConfig) -> dict[str, Any]:
    return {"sources": [{"name": s.name, "url": s.shown_url, "environment": s.environment,
                         "policy": os.path.basename(s.policy) if s.policy else None, "anonymize": s.anonymize,
                         "segment": s.segment.to_json() if s.segment.active else None}
                        for s in config.sources.values()],
            "destinations": [{"name": d.name, "location": d.location, "encrypt_to": d.recipients,
                              "encrypt_required": d.encrypt_required}
                             for d in config.destinations.values()]}


def plan_json(config: ServiceConfig, source_name: str, anonymize: bool | None = None,
              segment: SegmentRequest | None = None) -> dict[str, Any]:
    """The plan an export of ``source_name`` would follow: its tables with estimated rows (for
    a segment, its rows per table counted), the columns left out or masked and why, the
    security notices, and the segment in one line (``segment_text``)."""
    from ..exporter import plan

    source = config.sources.get(source_name)
    if source is None:
        raise HTTPProblem(404, "not_found", f"unknown source '{source_name}'; choose one of: "
                          + ", ".join(sorted(config.sources)))
    if segment is not None:
        segment.check()
    request = ExportRequest(source_name, "", anonymize=anonymize, segment=segment)
    out = plan(options_for(source, "-", request, "", None)).to_json()
    out["segment_text"] = request.segment_for(source).describe()
    return out


def start(svc: Service, request: ExportRequest, user: User, addr: str) -> int:
    """Start an export; :class:`.approvals.ApprovalRequired` when it waits for a second admin.
    A refused request (a bad name, option or segment) is in the audit trail too."""
    try:
        source, _ = check_request(svc.config, request)
        if source.approval:
            from . import approvals

            protected = approvals.protected_columns(svc.config, request)
            if protected:
                raise approvals.ApprovalRequired(
                    approvals.request_approval(svc.state, request, user.email, addr, protected), protected)
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
    """("file", path, filename), ("url", presigned URL, filename) or, for a JSON Lines folder,
    ("tar", its location, filename.tar)."""
    try:
        row, target = svc.jobs.finished_file(job_id)
        filename = os.path.basename(target.rstrip("/"))
        if is_folder(row):
            if not target.startswith("s3://") and not os.path.isdir(target):
                raise NotFoundError(f"the folder of export {job_id} is gone from {target}", job=job_id)
            kind, where, filename = "tar", target, filename + ".tar"
        elif target.startswith("s3://"):
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
                               "sha256": result.sha256, "checksum_file": result.checksum_file,
                               # Encrypted: the service holds no private key, so only the file's
                               # SHA-256 against its checksum file is checked.
                               "content_checked": result.content_checked}
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
