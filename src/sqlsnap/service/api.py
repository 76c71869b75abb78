"""The HTTP API under ``/api``: JSON in and out, bearer tokens, the role checked on every
endpoint (admin: export, download, delete, plan; viewer: history and audit), one error shape.

Exports return 202 with the job's id at once; the job runs in a worker process. A download
streams the file from disk in chunks (never read into memory), or for S3 answers 307 to a
presigned URL that works for ``presign_seconds``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from . import approvals, audit, auth, expiry, operations
from .auth import User
from .context import HTTPProblem, Service, address, service
from .jobs import ExportRequest
from .segment import SegmentRequest


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (400, "bad request"), (401, "missing, wrong, expired or revoked token"), (403, "wrong role"),
        (404, "no such export or file"), (422, "invalid parameters"))}


def bearer_user(request: Request) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": "Bearer"}
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPProblem(401, "unauthorized", "missing bearer token; send Authorization: Bearer TOKEN "
                          "(create one with sqlsnap tokens create)", challenge)
    user, why = auth.token_user(service(request).state, token.strip())
    if user is None:
        raise HTTPProblem(401, "unauthorized", {
            "expired": "the token has expired; create a new one with sqlsnap tokens create",
            "revoked": "the token was revoked; create a new one with sqlsnap tokens create",
        }.get(why, "invalid token"), challenge)
    return user


def admin_user(user: Annotated[User, Depends(bearer_user)]) -> User:
    if not user.is_admin:
        raise HTTPProblem(403, "forbidden", "this needs the admin role")
    return user


AnyUser = Annotated[User, Depends(bearer_user)]
Admin = Annotated[User, Depends(admin_user)]
Svc = Annotated[Service, Depends(service)]
JobId = Annotated[int, Field(ge=1, le=2**53)]


Item = Annotated[str, Field(max_length=500)]


class SegmentBody(BaseModel):
    """Which rows (docs/segments.md); the options of ``sqlsnap export``. ``{}``: the whole
    database, whatever the source's default."""

    model_config = ConfigDict(extra="forbid")

    where: list[Item] = Field(default_factory=list, max_length=50, description=(
        "Seed rows, 'TABLE.COLUMN OP VALUE' (as --where; AND-ed on one table). Parsed, never pasted into "
        "SQL: names are checked against the schema, values bound"))
    closure: bool = Field(True, description="Add every row that belongs to the seeds or that they reference "
                          "(false: --no-closure)")
    since: str | None = Field(None, max_length=40, description="A date range's start: 2026-10-01 or "
                              "2026-10-01T12:00:00")
    until: str | None = Field(None, max_length=40, description="A date range's end, excluded")
    date_columns: list[Item] = Field(default_factory=list, max_length=50,
                                     description="The date columns of the range, TABLE.COLUMN")
    tables: list[Item] = Field(default_factory=list, max_length=50,
                               description="Only these tables (globs); with closed, whole, with what they "
                                           "reference")
    closed: bool = False
    sample: str | None = Field(None, max_length=20, description="A sample of the seed rows: 5%")
    limit: int | None = Field(None, ge=1, le=2**53, description="At most this many seed rows per seed table")
    seed: int | None = Field(None, ge=-(2**53), le=2**53, description="Which rows sample and limit pick")

    def request(self) -> SegmentRequest:
        return SegmentRequest.from_json(self.model_dump())


class ExportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="A source name from the configuration", max_length=200)
    destination: str = Field(description="A destination name from the configuration", max_length=200)
    compress: Literal["zstd", "gzip", "none"] = "zstd"
    anonymize: bool | None = Field(None, description="Apply the PII preset (default: the source's setting)")
    exclude_tables: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=100)
    include_secrets: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=100,
        description="Deny-listed columns to export anyway (TABLE.COLUMN); may need a second admin's approval")
    lifetime: str | None = Field(None, max_length=20, description="Delete the file this long after the "
                                 "export ends: 12h, 7d, 2w (default: keep it)")
    format: Literal["json", "jsonl"] = Field("json", description="json: one document; jsonl: a folder of "
                                             "one file per table (downloaded as a tar stream)")
    segment: SegmentBody | None = Field(None, description="Which rows (default: the source's segment, if "
                                        "it has one; {} for the whole database)")
    encrypt: bool | None = Field(None, description="Encrypt (age) to the destination's recipients "
                                 "(default: when the destination names some)")


router = APIRouter(prefix="/api", responses=ERRORS)


@router.get("/sources", summary="Sources and destinations an export may use")
def list_sources(user: Admin, svc: Svc) -> dict[str, Any]:
    return operations.sources_json(svc.config)


@router.get("/plan", summary="What an export of a source would write (sqlsnap plan); for a segment, its "
            "rows per table")
def get_plan(user: Admin, svc: Svc, source: Annotated[str, Query(max_length=200)],
             anonymize: bool | None = None,
             where: Annotated[list[Item] | None, Query(
                 max_length=50, description="As the export's segment.where; any segment parameter "
                                            "replaces the source's segment")] = None,
             closure: bool = True, since: Annotated[str | None, Query(max_length=40)] = None,
             until: Annotated[str | None, Query(max_length=40)] = None,
             date_columns: Annotated[list[Item] | None, Query(max_length=50)] = None,
             tables: Annotated[list[Item] | None, Query(max_length=50)] = None, closed: bool = False,
             sample: Annotated[str | None, Query(max_length=20)] = None,
             limit: Annotated[int | None, Query(ge=1, le=2**53)] = None,
             seed: Annotated[int | None, Query(ge=-(2**53), le=2**53)] = None) -> dict[str, Any]:
    segment = SegmentBody(where=where or [], closure=closure, since=since, until=until,
                          date_columns=date_columns or [], tables=tables or [], closed=closed, sample=sample,
                          limit=limit, seed=seed)
    given = segment.model_dump(exclude_defaults=True)
    return operations.plan_json(svc.config, source, anonymize=anonymize,
                                segment=segment.request() if given else None)


@router.post("/exports", status_code=202, summary="Start an export; returns its id at once (or, when it "
             "needs a second admin's approval, the approval request's)")
def start_export(body: ExportBody, request: Request, user: Admin, svc: Svc) -> dict[str, Any]:
    try:
        job_id = operations.start(svc, ExportRequest(
            body.source, body.destination, body.compress, body.anonymize, tuple(body.exclude_tables),
            tuple(body.include_secrets), expiry.lifetime_seconds(body.lifetime), body.format,
            body.segment.request() if body.segment is not None else None, body.encrypt),
            user, address(request))
    except approvals.ApprovalRequired as waiting:
        return {"approval": waiting.approval_id, "status": "awaiting_approval",
                "protected": waiting.protected, "url": f"/api/approvals/{waiting.approval_id}"}
    return {"id": job_id, "status": "queued", "url": f"/api/exports/{job_id}"}


@router.get("/approvals", summary="Approval requests, newest first")
def list_approvals(user: Admin, svc: Svc,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    return {"approvals": approvals.listing(svc.state, limit)}


@router.get("/approvals/{approval_id}", summary="An approval request")
def get_approval(approval_id: JobId, user: Admin, svc: Svc) -> dict[str, Any]:
    return approvals.approval_json(approvals.get(svc.state, approval_id))


@router.post("/approvals/{approval_id}/approve", summary="Approve another admin's export; it starts at once")
def approve(approval_id: JobId, request: Request, user: Admin, svc: Svc) -> dict[str, Any]:
    return approvals.decide(svc, approval_id, user.email, address(request), approve=True)


@router.post("/approvals/{approval_id}/refuse", summary="Refuse another admin's export")
def refuse(approval_id: JobId, request: Request, user: Admin, svc: Svc) -> dict[str, Any]:
    return approvals.decide(svc, approval_id, user.email, address(request), approve=False)


@router.get("/exports", summary="Export history, newest first")
def list_exports(user: AnyUser, svc: Svc, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 before: Annotated[int | None, Query(ge=1, le=2**53)] = None) -> dict[str, Any]:
    return {"exports": svc.jobs.history(limit, before)}


@router.get("/exports/{job_id}", summary="An export's status, progress and, when done, its summary")
def get_export(job_id: JobId, user: AnyUser, svc: Svc) -> dict[str, Any]:
    return operations.job(svc, job_id)


@router.post("/exports/{job_id}/cancel", summary="Cancel a queued or running export")
def cancel_export(job_id: JobId, request: Request, user: Admin, svc: Svc) -> dict[str, Any]:
    return operations.cancel(svc, job_id, user, address(request))


@router.get("/exports/{job_id}/download", summary="The export's file (S3: a redirect to a presigned URL)",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}, 307: {"description": "presigned"}})
def download_export(job_id: JobId, request: Request, user: Admin, svc: Svc) -> Response:
    return download_response(svc, job_id, user, address(request))


@router.post("/exports/{job_id}/verify", summary="Verify the export's file (sqlsnap verify)")
def verify_export(job_id: JobId, request: Request, user: Admin, svc: Svc) -> dict[str, Any]:
    return operations.verify(svc, job_id, user, address(request))


@router.delete("/exports/{job_id}", summary="Delete the export's file; the job stays in history")
def delete_export(job_id: JobId, request: Request, user: Admin, svc: Svc) -> dict[str, Any]:
    operations.delete(svc, job_id, user, address(request))
    return operations.job(svc, job_id)


@router.get("/schedules", summary="The configured schedules, their next due time and recent runs")
def list_schedules(user: AnyUser, svc: Svc) -> dict[str, Any]:
    return {"schedules": svc.scheduler.to_json() if svc.scheduler is not None else []}


@router.get("/audit", summary="Audit entries, newest first")
def list_audit(user: AnyUser, svc: Svc, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               before: Annotated[int | None, Query(ge=1, le=2**53)] = None) -> dict[str, Any]:
    return {"entries": audit.entries(svc.state, limit=limit, before=before)}


def download_response(svc: Service, job_id: int, user: User, addr: str) -> Response:
    kind, where, filename = operations.download(svc, job_id, user, addr)
    if kind == "url":
        return RedirectResponse(where, status_code=307)
    if kind == "tar":
        from .archive import tar_stream
        from .jobs import folder_store

        row = svc.jobs.row(job_id)
        dest = svc.config.destinations.get(row["destination"])
        store, prefix = folder_store(where, dest.s3_endpoint if dest else None)
        stream = tar_stream(store, prefix, filename.removesuffix(".tar"), row["finished"] or 0)
        return StreamingResponse(stream, media_type="application/x-tar",
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    # FileResponse streams the file in 64 KiB chunks from a worker thread.
    return FileResponse(where, filename=filename, media_type="application/octet-stream")
