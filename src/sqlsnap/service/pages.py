"""The admin pages: server-rendered Jinja2 and plain HTML forms (no script needed; a running
export's page reloads itself every second until the export ends).

Sessions live in the state database; the cookie holds a random id only (HttpOnly,
SameSite=Strict, Secure unless ``cookie_secure = false``). Every form carries a CSRF token:
the session's, or before login a random value also set in a short-lived cookie (double
submit). Every page checks the role on the server; a viewer is refused the export pages
even when typing their address.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..errors import SnapError, UsageError
from ..urls import mask
from . import audit, auth, expiry, operations
from .auth import LoginRefused, User
from .context import HTTPProblem, Service, address, service
from .jobs import ACTIVE, ExportRequest
from .segment import SegmentRequest

SESSION_COOKIE = "sqlsnap_session"
LOGIN_COOKIE = "sqlsnap_login_csrf"

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


def _when(value: float | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float | int):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value).replace("T", " ").replace("Z", " UTC")


def _size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return str(n)


templates.env.filters["when"] = _when
templates.env.filters["size"] = _size


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class Page:
    """The logged-in user of a page, with the session's CSRF token."""

    def __init__(self, request: Request, user: User, csrf: str) -> None:
        self.request, self.user, self.csrf = request, user, csrf

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context = {"user": self.user, "csrf": self.csrf, **context}
        return templates.TemplateResponse(self.request, name, context, status_code=status)

    def check_csrf(self, token: str) -> None:
        if not auth.same(token, self.csrf):
            raise HTTPProblem(403, "csrf", "the form's CSRF token is missing or wrong; reload the page and "
                              "try again")


def page(request: Request) -> Page:
    found = auth.session_user(service(request).state, request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise LoginRequired(request.url.path)
    return Page(request, *found)


def admin_page(p: Annotated[Page, Depends(page)]) -> Page:
    if not p.user.is_admin:
        raise HTTPProblem(403, "forbidden", "this page needs the admin role")
    return p


AnyPage = Annotated[Page, Depends(page)]
AdminPage = Annotated[Page, Depends(admin_page)]
Svc = Annotated[Service, Depends(service)]
Csrf = Annotated[str, Form()]

router = APIRouter(include_in_schema=False)


# -- login ---------------------------------------------------------------------------------------

def _login_form(request: Request, error: str = "", status: int = 200, next_url: str = "/") -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    sso = getattr(request.app.state, "oidc", None)
    response = templates.TemplateResponse(request, "login.html", {
        "user": None, "csrf": token, "error": error, "next": next_url,
        "sso_label": sso.config.label if sso is not None else None}, status_code=status)
    secure = service(request).config.security.cookie_secure
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", secure=secure)
    return response


def safe_next(value: str) -> str:
    """Only a path on this site (not ``//host``): the login form must not redirect elsewhere."""
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/"


@router.get("/login")
def login_page(request: Request, svc: Svc, next: str = "/") -> Response:
    proxied = _proxy_login(request, svc, safe_next(next))
    return proxied or _login_form(request, next_url=safe_next(next))


def _proxy_login(request: Request, svc: Service, next_url: str) -> Response | None:
    """Single sign-on by a trusted reverse proxy's header (``proxy_user_header``): a session for
    the account it names, when the request comes from a ``trusted_proxies`` address."""
    security = svc.config.security
    if not security.proxy_user_header:
        return None
    addr = address(request)
    email = request.headers.get(security.proxy_user_header, "").strip()
    if not email or addr not in security.trusted_proxies:
        return None
    try:
        user = auth.find_user(svc.state, email)
    except SnapError:
        audit.record(svc.state, actor=email[:254], action="login", address=addr, outcome="failed",
                     detail={"via": "proxy", "error": "no such account"})
        raise HTTPProblem(403, "forbidden", f"the proxy signed in {email}, who has no account here; an "
                          "admin can add it with sqlsnap users add") from None
    return start_session(svc, user, addr, next_url, via="proxy")


def start_session(svc: Service, user: User, addr: str, next_url: str, via: str = "password") -> Response:
    sid, _ = auth.new_session(svc.state, user, svc.config.security)
    audit.record(svc.state, actor=user.email, action="login", address=addr,
                 detail={} if via == "password" else {"via": via})
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(SESSION_COOKIE, sid, max_age=svc.config.security.session_minutes * 60, httponly=True,
                        samesite="strict", secure=svc.config.security.cookie_secure)
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/login")
def login_submit(request: Request, svc: Svc, email: Annotated[str, Form()] = "",
                 password: Annotated[str, Form()] = "", csrf: Csrf = "",
                 next: Annotated[str, Form()] = "/") -> Response:
    addr = address(request)
    if not auth.same(csrf, request.cookies.get(LOGIN_COOKIE)):
        raise HTTPProblem(403, "csrf", "the form's CSRF token is missing or wrong; reload the page and "
                          "try again")
    try:
        user = auth.login(svc.state, svc.config.security, email.strip(), password, addr)
    except LoginRefused as exc:
        audit.record(svc.state, actor=email.strip()[:254] or "(none)", action="login", address=addr,
                     outcome="locked" if exc.locked else "failed")
        return _login_form(request, str(exc), 429 if exc.locked else 401, safe_next(next))
    return start_session(svc, user, addr, safe_next(next))


@router.post("/logout")
def logout(p: AnyPage, svc: Svc, csrf: Csrf = "") -> Response:
    p.check_csrf(csrf)
    auth.end_session(svc.state, p.request.cookies.get(SESSION_COOKIE))
    audit.record(svc.state, actor=p.user.email, action="logout", address=address(p.request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def home(p: AnyPage) -> Response:
    return RedirectResponse("/export" if p.user.is_admin else "/history", status_code=303)


# -- export --------------------------------------------------------------------------------------

class SegmentForm:
    """The export form's segment fields, as typed (shown again) and as a request."""

    FIELDS = ("where", "since", "until", "date_columns", "tables", "sample", "limit", "seed")

    def __init__(self, values: dict[str, str], no_closure: bool, closed: bool) -> None:
        self.values, self.no_closure, self.closed = values, no_closure, closed

    @classmethod
    def of(cls, segment: SegmentRequest) -> SegmentForm:
        """A source's default segment, filled in."""
        return cls({"where": "\n".join(segment.where), "since": segment.since or "",
                    "until": segment.until or "", "date_columns": ", ".join(segment.date_columns),
                    "tables": ", ".join(segment.tables), "sample": segment.sample or "",
                    "limit": "" if segment.limit is None else str(segment.limit),
                    "seed": "" if segment.seed is None else str(segment.seed)},
                   not segment.closure, segment.closed)

    def request(self) -> SegmentRequest:
        """The segment asked for; UsageError for a number that is not one (the rest is checked
        by :meth:`SegmentRequest.check`)."""
        v = {k: self.values.get(k, "").strip() for k in self.FIELDS}
        numbers: dict[str, int | None] = {}
        for key in ("limit", "seed"):
            try:
                numbers[key] = int(v[key]) if v[key] else None
            except ValueError:
                raise UsageError(f"segment {key} must be a whole number, not {v[key][:20]!r}") from None
        return SegmentRequest(
            where=tuple(line.strip() for line in v["where"].splitlines() if line.strip()),
            closure=not self.no_closure, since=v["since"] or None, until=v["until"] or None,
            date_columns=tuple(c.strip() for c in v["date_columns"].split(",") if c.strip()),
            tables=tuple(t.strip() for t in v["tables"].split(",") if t.strip()), closed=self.closed,
            sample=v["sample"] or None, limit=numbers["limit"], seed=numbers["seed"])


def _segment_form(request: Request) -> SegmentForm | None:
    """The segment fields of a "Show the plan" request; None when the form was not sent (the
    page then shows the source's default segment)."""
    q = request.query_params
    if q.get("seg") != "1":
        return None
    return SegmentForm({k: q.get(k, "")[:5000] for k in SegmentForm.FIELDS}, bool(q.get("no_closure")),
                       bool(q.get("closed")))


def _export_form(p: Page, svc: Service, chosen: str, anonymize: bool, form: SegmentForm | None,
                 error: str = "", status: int = 200, asked: dict[str, str] | None = None) -> HTMLResponse:
    """The export page: the source's plan for the segment in the form, and the export form."""
    source = svc.config.sources[chosen]
    form = form or SegmentForm.of(source.segment)
    plan: dict[str, Any] | None = None
    try:
        plan = operations.plan_json(svc.config, chosen, anonymize=True if anonymize else None,
                                    segment=form.request())
    except SnapError as exc:
        error = error or mask(str(exc))
    return p.render("export.html", status=status, sources=svc.config.sources,
                    destinations=svc.config.destinations, lifetimes=expiry.FORM_LIFETIMES, chosen=source,
                    plan=plan, error=error, anonymize=anonymize, segment=form, asked=asked or {})


@router.get("/export")
def export_page(request: Request, p: AdminPage, svc: Svc, source: str = "",
                anonymize: str = "") -> HTMLResponse:
    chosen = source if source in svc.config.sources else next(iter(svc.config.sources))
    return _export_form(p, svc, chosen, bool(anonymize), _segment_form(request))


@router.post("/export")
def export_submit(p: AdminPage, svc: Svc, csrf: Csrf = "", source: Annotated[str, Form()] = "",
                  destination: Annotated[str, Form()] = "", compress: Annotated[str, Form()] = "zstd",
                  anonymize: Annotated[str, Form()] = "", lifetime: Annotated[str, Form()] = "",
                  format: Annotated[str, Form()] = "json", encrypt: Annotated[str, Form()] = "",
                  where: Annotated[str, Form(max_length=5000)] = "",
                  since: Annotated[str, Form(max_length=40)] = "",
                  until: Annotated[str, Form(max_length=40)] = "",
                  date_columns: Annotated[str, Form(max_length=5000)] = "",
                  tables: Annotated[str, Form(max_length=5000)] = "", closed: Annotated[str, Form()] = "",
                  no_closure: Annotated[str, Form()] = "", sample: Annotated[str, Form(max_length=20)] = "",
                  limit: Annotated[str, Form(max_length=20)] = "",
                  seed: Annotated[str, Form(max_length=20)] = "") -> Response:
    p.check_csrf(csrf)
    if source not in svc.config.sources:
        raise HTTPProblem(400, "bad_request", f"unknown source '{source}'; choose one of: "
                          + ", ".join(sorted(svc.config.sources)))
    form = SegmentForm({"where": where, "since": since, "until": until, "date_columns": date_columns,
                        "tables": tables, "sample": sample, "limit": limit, "seed": seed},
                       bool(no_closure), bool(closed))
    asked = {"destination": destination, "compress": compress, "format": format, "encrypt": encrypt,
             "lifetime": lifetime}
    try:
        if lifetime not in expiry.FORM_LIFETIMES:
            raise UsageError(f"unknown lifetime '{lifetime}'; choose one of the form's")
        if encrypt not in ("", "yes", "no"):
            raise UsageError(f"unknown encryption choice '{encrypt}'; choose one of the form's")
        job_id = operations.start(svc, ExportRequest(
            source, destination, compress, True if anonymize else None,
            lifetime_seconds=expiry.lifetime_seconds(lifetime), format=format, segment=form.request(),
            encrypt={"yes": True, "no": False}.get(encrypt)), p.user, address(p.request))
    except SnapError as exc:
        # Shown on the form, with what was typed, so the admin can correct it.
        return _export_form(p, svc, source, bool(anonymize), form, error=mask(str(exc)), status=400,
                            asked=asked)
    return RedirectResponse(f"/exports/{job_id}", status_code=303)


@router.get("/exports/{job_id}")
def job_page(job_id: int, p: AnyPage, svc: Svc) -> HTMLResponse:
    job = operations.job(svc, job_id)
    return p.render("job.html", job=job, active=job["status"] in ACTIVE, verified=None)


@router.post("/exports/{job_id}/cancel")
def job_cancel(job_id: int, p: AdminPage, svc: Svc, csrf: Csrf = "") -> Response:
    p.check_csrf(csrf)
    operations.cancel(svc, job_id, p.user, address(p.request))
    return RedirectResponse(f"/exports/{job_id}", status_code=303)


@router.get("/exports/{job_id}/download")
def job_download(job_id: int, p: AdminPage, svc: Svc) -> Response:
    from .api import download_response

    return download_response(svc, job_id, p.user, address(p.request))


@router.post("/exports/{job_id}/verify")
def job_verify(job_id: int, p: AdminPage, svc: Svc, csrf: Csrf = "") -> HTMLResponse:
    p.check_csrf(csrf)
    verified = operations.verify(svc, job_id, p.user, address(p.request))
    return p.render("job.html", job=operations.job(svc, job_id), active=False, verified=verified)


@router.post("/exports/{job_id}/delete")
def job_delete(job_id: int, p: AdminPage, svc: Svc, csrf: Csrf = "") -> Response:
    p.check_csrf(csrf)
    operations.delete(svc, job_id, p.user, address(p.request))
    return RedirectResponse("/history", status_code=303)


# -- history and audit ---------------------------------------------------------------------------

@router.get("/history")
def history_page(p: AnyPage, svc: Svc) -> HTMLResponse:
    return p.render("history.html", jobs=svc.jobs.history(200))


@router.get("/audit")
def audit_page(p: AnyPage, svc: Svc) -> HTMLResponse:
    chain = audit.verify_chain(svc.state)
    return p.render("audit.html", entries=audit.entries(svc.state, limit=200), chain=chain)


@router.get("/audit.json")
def audit_export(p: AdminPage, svc: Svc) -> Response:
    """The whole trail as JSON, hashes included, for safekeeping elsewhere (admins only)."""
    entries = audit.entries(svc.state, limit=10**9)
    audit.record(svc.state, actor=p.user.email, action="audit.export", address=address(p.request))
    return Response(json.dumps({"entries": entries[::-1]}, indent=1), media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="sqlsnap-audit.json"'})
