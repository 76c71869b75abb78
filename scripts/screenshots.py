"""Regenerate the screenshots of the service's pages in docs/images/ (docs/service.md shows them).

Starts a service on a temporary folder with the demo SQLite database (tests/_service.py),
drives Debian's Chromium through the pages with Playwright, and saves one PNG per page.

Run: .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._service import ADMIN, PASSWORD, build_demo, make_env, running  # noqa: E402
from tests.test_service_browser import ARGS, CHROMIUM  # noqa: E402

OUT = ROOT / "docs" / "images"


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "svc").mkdir()
        env = make_env(root / "svc", build_demo(root / "demo.db"))
        with running(env.app()) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(base_url=url, viewport={"width": 1280, "height": 800})
            page.goto("/login")
            page.fill("#email", ADMIN)
            page.screenshot(path=OUT / "service-login.png")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/export")
            page.screenshot(path=OUT / "service-export.png", full_page=True)
            page.click("#export-button")
            page.locator("#status", has_text="succeeded").wait_for()
            # A segment of one company, as JSON Lines: its plan, then its job page.
            page.goto("/export")
            page.fill("#where", "companies.id = 2")
            page.click("#plan-button")
            page.select_option("#format", "jsonl")
            page.screenshot(path=OUT / "service-export-segment.png", full_page=True)
            page.click("#export-button")
            page.locator("#status", has_text="succeeded").wait_for()
            page.click("#verify-button")
            page.locator("#verified").wait_for()
            page.screenshot(path=OUT / "service-job.png", full_page=True)
            page.goto("/history")
            page.screenshot(path=OUT / "service-history.png")
            page.goto("/audit")
            page.screenshot(path=OUT / "service-audit.png")
            browser.close()
    for name in sorted(OUT.glob("service-*.png")):
        print(f"wrote {name.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
