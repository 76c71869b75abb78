"""Two-person approval in real Chromium (issue 17): an admin's export of unmasked PII waits;
the Approvals page offers the requester no button; a second admin approves it there and the
export runs as the requester's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from ._service import ADMIN, build_demo, running  # noqa: E402
from .test_service_approvals import SECOND, approval_env  # noqa: E402
from .test_service_browser import ARGS, CHROMIUM, log_in  # noqa: E402


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_a_second_admin_approves_an_export_on_the_approvals_page(browser: Any, tmp_path: Path) -> None:
    env = approval_env(tmp_path, build_demo(tmp_path / "source.db"))
    with running(env.app()) as base_url:
        first = browser.new_context(base_url=base_url)
        second = browser.new_context(base_url=base_url)
        for ctx in (first, second):
            ctx.set_default_timeout(20_000)
        page = first.new_page()
        log_in(page, ADMIN)
        page.wait_for_url(lambda url: "/login" not in url)
        page.goto("/export")
        page.click("#export-button")
        assert "needs a second admin's approval: request 1" in page.locator("[role=alert]").inner_text()
        page.goto("/approvals")
        row = page.locator("#approval-1")
        assert "users.email (unmasked" in row.inner_text() and "waiting for another admin" in row.inner_text()
        assert row.locator("button").count() == 0  # no Approve for the requester
        assert env.state.one("SELECT count(*) AS n FROM jobs")["n"] == 0

        other = second.new_page()
        log_in(other, SECOND)
        other.wait_for_url(lambda url: "/login" not in url)
        other.goto("/approvals")
        other.locator("#approval-1").get_by_role("button", name="Approve").click()
        other.wait_for_url("**/exports/1")
        deadline = time.monotonic() + 60
        while (row := env.state.one("SELECT status, actor FROM jobs WHERE id = 1"))["status"] in ("queued",
                                                                                                    "running"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (row["status"], row["actor"]) == ("succeeded", ADMIN)
        other.goto("/approvals")
        assert f"by {SECOND}" in other.locator("#approval-1").inner_text()
        first.close()
        second.close()
