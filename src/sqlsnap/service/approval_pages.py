"""The Approvals page: admins see the approval requests (:mod:`.approvals`) and answer the
other admins' pending ones; the requester's own show no buttons (and the answer is refused
anyway, by :func:`.approvals.decide`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from . import approvals
from .context import address
from .pages import AdminPage, Csrf, Svc

router = APIRouter(include_in_schema=False)


@router.get("/approvals")
def approvals_page(p: AdminPage, svc: Svc) -> HTMLResponse:
    return p.render("approvals.html", approvals=approvals.listing(svc.state))


@router.post("/approvals/{approval_id}/approve")
def approve(approval_id: int, p: AdminPage, svc: Svc, csrf: Csrf = "") -> Response:
    p.check_csrf(csrf)
    answered = approvals.decide(svc, approval_id, p.user.email, address(p.request), approve=True)
    return RedirectResponse(f"/exports/{answered['job']}", status_code=303)


@router.post("/approvals/{approval_id}/refuse")
def refuse(approval_id: int, p: AdminPage, svc: Svc, csrf: Csrf = "") -> Response:
    p.check_csrf(csrf)
    approvals.decide(svc, approval_id, p.user.email, address(p.request), approve=False)
    return RedirectResponse("/approvals", status_code=303)
