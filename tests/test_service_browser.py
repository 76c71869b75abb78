"""The admin pages in real Chromium (Debian's, driven by Playwright; issue 16): log in,
review the plan, export the demo database, watch the progress, download the file and verify
it, see it in history and in the audit trail; a viewer sees no export button and is refused;
a logged-out user is sent to the login page; form posts without the CSRF token fail; login
failures lock the account."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from ._service import ADMIN, PASSWORD, VIEWER, ServiceEnv, build_demo, make_env, running  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not os.path.exists(CHROMIUM):
    if os.environ.get("SQLSNAP_REQUIRE_SERVERS") == "1":
        raise RuntimeError(f"{CHROMIUM} is missing: run bash scripts/test.sh (it installs Debian's chromium)")
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> ServiceEnv:
    demo_db = build_demo(tmp_path_factory.mktemp("demo") / "demo.db")
    # Three failures lock an account (the lockout test), far above what the other tests make.
    return make_env(tmp_path_factory.mktemp("service"), demo_db, security="login_max_failures = 3\n")


@pytest.fixture(scope="module")
def base_url(env: ServiceEnv) -> Iterator[str]:
    with running(env.app()) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def context(browser: Any, base_url: str) -> Iterator[Any]:
    ctx = browser.new_context(base_url=base_url, accept_downloads=True)
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


def log_in(page: Any, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")


def test_an_admin_reviews_the_plan_exports_downloads_and_verifies(context: Any, env: ServiceEnv,
                                                                  tmp_path: Path) -> None:
    page = context.new_page()
    page.goto("/export")
    assert page.url.endswith("/login?next=/export")  # logged out: sent to the login page
    page.fill("#email", ADMIN)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/export")
    # The plan: tables with estimated rows, what is left out and why, the notices.
    plan = page.locator("#plan")
    assert "Plan: 16 tables, about 10,171 rows" in plan.locator("h2").first.inner_text()
    users = page.locator("#plan-tables tr", has_text="users").first.inner_text()
    assert "password_hash" in users and "60" in users
    assert page.locator("#notices .notice").count() >= 1
    page.select_option("#compress", "gzip")
    page.click("#export-button")
    page.wait_for_url(re.compile(r"/exports/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    # The page reloads itself while the export runs, then shows the result.
    page.locator("#status", has_text="succeeded").wait_for()
    assert "Tables 16 of 16 · 10,171 rows" in page.locator("#progress").inner_text()
    link = page.locator("#download")
    filename = link.get_attribute("download")
    assert re.fullmatch(rf"demo-export-\d{{4}}-\d\d-\d\dT\d\d-\d\d-\d\dZ-{job_id}\.json\.gz", filename or "")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == filename
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    from sqlsnap.snapshot import verify

    result = verify(str(saved))
    assert result.total_rows == 10171 and len(result.tables) == 16
    sha = hashlib.sha256(saved.read_bytes()).hexdigest()
    assert sha in page.locator("#summary").inner_text()
    page.click("#verify-button")
    assert "Verified: 16 tables, 10,171 rows" in page.locator("#verified").inner_text()
    # History and audit.
    page.click("text=History")
    row = page.locator("#history tr", has_text=f"{job_id}").first.inner_text()
    assert "succeeded" in row and ADMIN in row and sha[:12] in row
    page.click("text=Audit")
    assert "intact" in page.locator("#chain").inner_text()
    trail = page.locator("#audit").inner_text()
    for action in ("login", "export.start", "export", "download", "verify"):
        assert re.search(rf"\b{re.escape(action)}\b", trail), action
    assert f"job {job_id}" in trail and "127.0.0.1" in trail
    # Logging out ends the session: the pages send to the login page again.
    page.click("text=Log out")
    page.goto("/history")
    assert "/login" in page.url


def test_an_admin_exports_a_segment_as_json_lines_and_verifies_the_download(context: Any, env: ServiceEnv,
                                                                          tmp_path: Path) -> None:
    import tarfile

    from sqlsnap.snapshot import verify

    page = context.new_page()
    log_in(page, ADMIN)
    page.wait_for_url("**/export")
    # The segment is part of the plan review: its rows per table are counted.
    page.fill("#where", "companies.id = 2")
    page.click("#plan-button")
    assert "companies.id = 2" in page.locator("#segment-text").inner_text()
    companies = page.locator("#plan-tables tr", has_text="companies").first.inner_text()
    assert companies.split()[1] == "1"  # one company in the segment
    page.select_option("#format", "jsonl")
    page.select_option("#compress", "none")
    button = page.locator("#export-button")
    assert button.inner_text() == "Export Segment"
    button.click()
    page.wait_for_url(re.compile(r"/exports/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    page.locator("#status", has_text="succeeded").wait_for()
    assert page.locator("#job-segment").inner_text() == "companies.id = 2"
    assert page.locator("#job-format").inner_text() == "JSON Lines folder"
    link = page.locator("#download")
    filename = link.get_attribute("download") or ""
    assert re.fullmatch(rf"demo-export-[0-9T:Z-]+-{job_id}\.tar", filename), filename
    with page.expect_download() as info:
        link.click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    with tarfile.open(saved) as tar:
        tar.extractall(tmp_path, filter="data")
    result = verify(str(tmp_path / filename.removesuffix(".tar")), integrity=True)
    assert result.ok and result.tables["companies"] == 1
    rows = env.state.one("SELECT summary FROM jobs WHERE id = ?", [job_id])["summary"]
    assert result.total_rows == json.loads(rows)["rows"]
    page.click("#verify-button")
    assert "Verified:" in page.locator("#verified").inner_text()
    page.click("text=History")
    link_to_job = page.locator(f'a[href="/exports/{job_id}"]')
    row = page.locator("#history tbody tr").filter(has=link_to_job).inner_text()
    assert "companies.id = 2" in row and "JSON Lines" in row
    page.click("text=Audit")
    assert "companies.id = 2" in page.locator("#audit").inner_text()


def test_a_viewer_sees_no_export_button_and_is_refused(context: Any, env: ServiceEnv, base_url: str) -> None:
    page = context.new_page()
    log_in(page, VIEWER)
    page.wait_for_url("**/history")
    assert page.locator("header a", has_text="Export").count() == 0
    assert page.locator("#export-button").count() == 0
    assert page.locator("button", has_text="Delete").count() == 0
    response = page.goto("/export")
    assert response.status == 403 and "admin role" in page.content()
    assert page.locator("#export-button").count() == 0
    # Even a form post with the viewer's own valid CSRF token is refused, and starts nothing.
    before = env.state.one("SELECT count(*) AS n FROM jobs")["n"]
    page.goto("/history")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    r = context.request.post("/export", form={"csrf": csrf, "source": "demo", "destination": "local"})
    assert r.status == 403
    # The API answers 403 to the viewer's token too.
    r = context.request.post("/api/exports", data={"source": "demo", "destination": "local"},
                             headers={"Authorization": f"Bearer {env.tokens['viewer']}"})
    assert r.status == 403 and r.json()["error"]["code"] == "forbidden"
    assert env.state.one("SELECT count(*) AS n FROM jobs")["n"] == before


def test_form_posts_without_the_csrf_token_fail(context: Any, env: ServiceEnv) -> None:
    page = context.new_page()
    # Logging in needs the login form's token too.
    r = context.request.post("/login", form={"email": ADMIN, "password": PASSWORD})
    assert r.status == 403 and "sqlsnap_session" not in {c["name"] for c in context.cookies()}
    log_in(page, ADMIN)
    page.wait_for_url("**/export")
    before = env.state.one("SELECT count(*) AS n FROM jobs")["n"]
    for form in ({"source": "demo", "destination": "local"},
                 {"source": "demo", "destination": "local", "csrf": "forged"}):
        r = context.request.post("/export", form=form)
        assert r.status == 403 and "CSRF" in r.text()
    assert env.state.one("SELECT count(*) AS n FROM jobs")["n"] == before
    # The session cookie is HttpOnly and SameSite=Strict.
    cookie = next(c for c in context.cookies() if c["name"] == "sqlsnap_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    r = context.request.post("/logout", form={})
    assert r.status == 403  # logging out is a form too


def test_repeated_login_failures_lock_the_account(context: Any, env: ServiceEnv) -> None:
    from sqlsnap.service import auth

    auth.add_user(env.state, "locked@example.com", "admin", PASSWORD)
    page = context.new_page()
    for _ in range(3):
        log_in(page, "locked@example.com", "wrong password!")
        assert "wrong email or password" in page.locator("[role=alert]").inner_text()
    log_in(page, "locked@example.com")  # the right password, too late
    assert "account is locked" in page.locator("[role=alert]").inner_text()
    assert "/login" in page.url
    outcomes = [r["outcome"] for r in env.state.all(
        "SELECT outcome FROM audit WHERE action = 'login' AND actor = 'locked@example.com' ORDER BY id")]
    assert outcomes == ["failed", "failed", "failed", "locked"]
