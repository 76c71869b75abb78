"""Single sign-on with OpenID Connect (issue 16's optional OIDC login, through authlib): off by
default; on, the login page offers the provider, and a sign-in there opens a session for the
account with the verified email the provider's signed ID token names. Refused, with a 403 and
an audit entry: an account that does not exist, an unverified email, a forged token, a
callback not started in this browser or replayed, the provider's own refusal. The client
secret comes from the environment and is never shown."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("authlib")
pytest.importorskip("fastapi")

import httpx  # noqa: E402

from sqlsnap.service.config import ConfigError, load_config  # noqa: E402

from ._oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider  # noqa: E402
from ._service import ADMIN, ServiceEnv, build_demo, free_port, make_env, running  # noqa: E402


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    idp = Provider()
    with running(idp.app()) as url:
        idp.issuer = url
        yield idp


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[tuple[ServiceEnv, str]]:
    root = tmp_path_factory.mktemp("service")
    env = make_env(root, build_demo(tmp_path_factory.mktemp("demo") / "demo.db"))
    port = free_port()
    env.config_path.write_text(env.config_path.read_text() + (
        f'\n[oidc]\nissuer = "{provider.issuer}"\nclient_id = "{CLIENT_ID}"\n'
        f'client_secret_env = "OIDC_SECRET"\nredirect_url = "http://127.0.0.1:{port}/login/oidc/callback"\n'
        'label = "Sign in with Acme SSO"\n'))
    env.config = load_config(env.config_path, env={"OIDC_SECRET": CLIENT_SECRET})
    with running(env.app(), port) as url:
        yield env, url


@pytest.fixture
def browser(service: tuple[ServiceEnv, str]) -> Iterator[httpx.Client]:
    """A client with its own cookies that follows redirects, as a browser does."""
    with httpx.Client(base_url=service[1], follow_redirects=True, timeout=30) as client:
        yield client


def sign_in(client: httpx.Client, provider: Provider, email: str, **change: Any) -> httpx.Response:
    """Press the login page's SSO button and follow the redirects (provider, callback)."""
    provider.email, provider.email_verified, provider.forge, provider.error = email, True, False, ""
    for name, value in change.items():
        setattr(provider, name, value)
    page = client.get("/login?next=/history")
    link = re.search(r'id="sso" href="([^"]+)">Sign in with Acme SSO<', page.text)
    assert link is not None, page.text
    return client.get(link.group(1).replace("&amp;", "&"))


def last_login(env: ServiceEnv) -> Any:
    return env.state.one("SELECT * FROM audit WHERE action = 'login' ORDER BY id DESC LIMIT 1")


def test_a_sign_in_at_the_provider_opens_a_session_for_the_account(
        service: tuple[ServiceEnv, str], provider: Provider, browser: httpx.Client) -> None:
    env, base = service
    landed = sign_in(browser, provider, ADMIN.upper())  # emails compare without case
    client = browser
    assert landed.status_code == 200 and str(landed.url) == f"{base}/history"
    assert "ana@example.com (admin)" in landed.text
    assert client.get("/export").status_code == 200  # the account's role: admin
    entry = last_login(env)
    assert (entry["actor"], entry["outcome"], entry["detail"]) == (ADMIN, "ok", '{"via":"oidc"}')
    assert provider.codes == {}  # the code was exchanged, once


@pytest.mark.parametrize(("email", "change", "expected"), [
    ("nobody@example.com", {}, "who has no account here"),
    (ADMIN, {"email_verified": False}, "has not verified"),
    (ADMIN, {"forge": True}, "the ID token does not hold"),
    (ADMIN, {"error": "access_denied"}, "refused the sign-in: access_denied"),
])
def test_refused_sign_ins_open_no_session_and_are_audited(service: tuple[ServiceEnv, str], provider: Provider,
                                                          browser: httpx.Client, email: str,
                                                          change: dict[str, Any], expected: str) -> None:
    env, _ = service
    landed = sign_in(browser, provider, email, **change)
    assert landed.status_code == 403 and expected in landed.text
    assert "/login" in str(browser.get("/history").url)  # no session
    entry = last_login(env)
    assert entry["outcome"] == "failed" and expected in entry["detail"] and '"via":"oidc"' in entry["detail"]


def test_a_callback_not_started_in_this_browser_or_replayed_is_refused(service: tuple[ServiceEnv, str],
                                                                       provider: Provider) -> None:
    env, base = service
    provider.email, provider.email_verified, provider.forge, provider.error = ADMIN, True, False, ""
    with httpx.Client(base_url=base, timeout=30) as starter, httpx.Client(base_url=base, timeout=30) as other:
        to_provider = starter.get("/login/oidc")
        assert to_provider.status_code == 303 and to_provider.headers["location"].startswith(provider.issuer)
        back = httpx.get(to_provider.headers["location"], timeout=30)  # the provider's redirect back
        callback = back.headers["location"].removeprefix(base)
        # Someone else's browser (no cookie) following that link gets no session: login CSRF.
        refused = other.get(callback)
        assert refused.status_code == 403 and "not started in this browser" in refused.text
        # The starter's own browser gets in once; the same callback again is refused.
        assert starter.get(callback).status_code == 303
        again = starter.get(callback)  # its cookie went with the sign-in
        assert again.status_code == 403 and "not started in this browser" in again.text
        # Even with the cookie put back, the stored state was taken once and is gone.
        state = re.search(r"[?&]state=([^&]+)", callback)
        assert state is not None
        starter.cookies.set("sqlsnap_oidc", state.group(1), domain="127.0.0.1", path="/login/oidc")
        replayed = starter.get(callback)
        assert replayed.status_code == 403 and "already used" in replayed.text


def test_off_by_default_and_the_secret_stays_out_of_the_file(tmp_path: Path) -> None:
    env = make_env(tmp_path, build_demo(tmp_path / "demo-src.db"))
    from fastapi.testclient import TestClient

    with TestClient(env.app(), base_url="http://127.0.0.1") as client:
        assert 'id="sso"' not in client.get("/login").text
        assert client.get("/login/oidc", follow_redirects=False).status_code == 404
    base = env.config_path.read_text()
    oidc = ('\n[oidc]\nissuer = "https://idp.example.com"\nclient_id = "c"\n'
            'redirect_url = "https://sqlsnap.example.com/login/oidc/callback"\n')
    for extra, expected in [('client_secret = "s"\n', "client_secret is a secret"),
                            ('client_secret_env = "NOPE"\n', "NOPE (client_secret_env) is not set"),
                            ('client_secret_env = "S"\nissuer2 = 1\n', "unknown key 'issuer2'")]:
        env.config_path.write_text(base + oidc + extra)
        with pytest.raises(ConfigError, match=re.escape(expected)):
            load_config(env.config_path, env={"S": "x"})
    env.config_path.write_text(base + oidc.replace("https://idp", "http://idp") + 'client_secret_env = "S"\n')
    with pytest.raises(ConfigError, match="must be an https:// URL"):
        load_config(env.config_path, env={"S": "x"})
    env.config_path.write_text(base + oidc + 'client_secret_env = "S"\n')
    config = load_config(env.config_path, env={"S": "the-secret"})
    assert config.oidc is not None and "the-secret" not in repr(config)
