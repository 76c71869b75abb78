"""The web application: the API (:mod:`.api`), the pages (:mod:`.pages`), and the one place
where every error becomes a response.

Under ``/api`` every error, whatever raised it (a route, FastAPI's validation, an unknown
path, a bug), answers ``{"error": {"status": N, "code": "...", "message": "..."}}``; a page
gets the same message in an HTML page, and a page that needs a login sends to the login page.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import ConnectError, NotFoundError, OutputError, SnapError, UsageError
from ..urls import mask
from . import api, approval_pages, approvals, audit, expiry, oidc, oidc_pages, pages
from .config import ServiceConfig
from .context import HTTPProblem, Service
from .jobs import Jobs
from .notify import Notifier
from .schedules import Scheduler
from .state import State
from .state_open import open_state

log = logging.getLogger("sqlsnap.service")

#: SnapError classes as HTTP answers (others: 500).
_STATUS: list[tuple[type[SnapError], int, str]] = [
    (NotFoundError, 404, "not_found"), (UsageError, 400, "bad_request"),
    (ConnectError, 502, "source_unavailable"), (OutputError, 502, "destination_unavailable")]

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 422: "invalid", 429: "too_many_requests"}


def _problem(request: Request, problem: HTTPProblem) -> Response:
    if request.url.path.startswith("/api/") or request.url.path == "/api":
        return JSONResponse(problem.body(), status_code=problem.status, headers=problem.headers)
    return pages.templates.TemplateResponse(request, "error.html", {"user": None, "problem": problem},
                                            status_code=problem.status)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(HTTPProblem)
    async def on_problem(request: Request, exc: HTTPProblem) -> Response:
        return _problem(request, exc)

    @app.exception_handler(pages.LoginRequired)
    async def on_login(request: Request, exc: pages.LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={exc.next_url}", status_code=303)

    @app.exception_handler(SnapError)
    async def on_snap(request: Request, exc: SnapError) -> Response:
        status, code = next(((s, c) for kind, s, c in _STATUS if isinstance(exc, kind)),
                            (500, "export_error"))
        return _problem(request, HTTPProblem(status, code, mask(str(exc))))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        return _problem(request, HTTPProblem(422, "invalid", message))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no such page or endpoint: {request.url.path}" + (
                "; the API is described at /api/openapi.json" if request.url.path.startswith("/api") else "")
        return _problem(request, HTTPProblem(exc.status_code, _CODES.get(exc.status_code, "error"), message,
                                             dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _problem(request, HTTPProblem(500, "internal", f"internal error ({type(exc).__name__}); "
                                             "the service log has the details"))


_CSP = (b"default-src 'self'; style-src 'self' 'unsafe-inline'; form-action 'self'; "
        b"frame-ancestors 'none'")


class SecurityHeaders:
    """Headers on every answer: no sniffing, no framing, no referrer to other sites, a
    Content-Security-Policy (not on /api/docs, whose page loads Swagger UI from a CDN) and
    no caching except of downloads. A plain ASGI middleware: Starlette's BaseHTTPMiddleware
    costs a task and a stream per request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                 (b"referrer-policy", b"same-origin")]
        if not path.startswith("/api/docs"):
            extra.append((b"content-security-policy", _CSP))
        if not path.endswith("/download"):
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((n, v) for n, v in extra if n not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(config: ServiceConfig, state: State | None = None) -> FastAPI:
    """The application for ``config``; its state database is opened (and jobs a previous run
    left running are marked failed) when the application starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        st = state or open_state(config)
        audit.record_start(st, config)
        approvals.ensure_schema(st)
        expiry.ensure_schema(st)
        if config.oidc is not None:
            oidc.ensure_schema(st)
            app.state.oidc = oidc.Provider(config.oidc)
        app.state.service = svc = Service(config, st, Jobs(config, st))
        svc.scheduler = Scheduler(svc)
        if config.notify is not None:
            Notifier(config.notify, st, svc.jobs)
        svc.scheduler.start()
        try:
            yield
        finally:
            svc.scheduler.close()
            app.state.service.jobs.close()
            if state is None:
                st.close()

    app = FastAPI(title="sqlsnap service", version=__version__, lifespan=lifespan,
                  openapi_url="/api/openapi.json", docs_url="/api/docs", redoc_url=None,
                  description="Start, follow, download and verify database exports; read the history and "
                              "the audit trail. Every endpoint needs `Authorization: Bearer TOKEN` "
                              "(`sqlsnap tokens create`). Errors: `{\"error\": {status, code, message}}`.")
    _install_errors(app)

    app.add_middleware(SecurityHeaders)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(approval_pages.router)
    app.include_router(oidc_pages.router)
    return app
