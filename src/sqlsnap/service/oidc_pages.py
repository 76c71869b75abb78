"""The OIDC login routes (:mod:`.oidc`): ``/login/oidc`` sends the browser to the provider,
``/login/oidc/callback`` opens the session, or says why not (403, in the audit trail)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ..errors import SnapError
from . import audit, auth, oidc
from .context import HTTPProblem, address
from .pages import Svc, safe_next, start_session

router = APIRouter(include_in_schema=False)


def _provider(request: Request) -> oidc.Provider:
    provider: oidc.Provider | None = getattr(request.app.state, "oidc", None)
    if provider is None:
        raise HTTPProblem(404, "not_found", "single sign-on (OIDC) is not configured; log in with a "
                          "password, or add an [oidc] table to the configuration")
    return provider


@router.get("/login/oidc")
def oidc_start(request: Request, svc: Svc, next: str = "/") -> Response:
    provider = _provider(request)
    url, cookie = oidc.begin(provider, svc.state, safe_next(next))
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(oidc.COOKIE, cookie, max_age=oidc.LOGIN_SECONDS, httponly=True, samesite="lax",
                        secure=svc.config.security.cookie_secure, path="/login/oidc")
    return response


@router.get("/login/oidc/callback")
def oidc_callback(request: Request, svc: Svc, state: str = "", code: str = "", error: str = "",
                  error_description: str = "") -> Response:
    provider = _provider(request)
    addr = address(request)
    email = ""
    try:
        if error:
            raise oidc.LoginFailed(f"the OIDC provider refused the sign-in: {error[:100]}"
                                   + (f" ({error_description[:200]})" if error_description else ""))
        email, next_url = oidc.finish(provider, svc.state, state[:200], request.cookies.get(oidc.COOKIE),
                                      code[:2000])
        user = auth.find_user(svc.state, email)
    except SnapError as exc:
        message = str(exc) if isinstance(exc, oidc.LoginFailed) else (
            f"the provider signed in {email}, who has no account here; an admin can add it with "
            "sqlsnap users add")
        audit.record(svc.state, actor=email[:254] or "(oidc)", action="login", address=addr, outcome="failed",
                     detail={"via": "oidc", "error": message})
        raise HTTPProblem(403, "forbidden", message) from None
    response = start_session(svc, user, addr, next_url, via="oidc")
    response.delete_cookie(oidc.COOKIE, path="/login/oidc")
    return response
