"""`make screenshots`: PNGs of the main customer pages, Polish and English, at 1280 and 390 px.

Starts ``scripts/devserver.py`` on free ports (the demo database of ``make demo-db``), logs in
as the Standard demo customer in Debian's Chromium and writes ``docs/screenshots/<page>-<lang>-
<width>.png``. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
PAGES = {
    "my-package": "/package",
    "checkout": "/package/edit",
    "invoices": "/invoices",
    "payments": "/payments",
    "billing": "/billing",
    "support": "/support",
}
WIDTHS = {"desktop": 1280, "phone": 390}
LANGUAGES = ("pl", "en")
EMAIL, PASSWORD = "standard@demo.example.com", "pakiet-demo-2026"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PAKIET_DEVELOPMENT": "1"}
    server = subprocess.Popen(
        [
            sys.executable,
            "scripts/devserver.py",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--free-ports",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = ""
        for line in server.stdout:
            if line.startswith("PAKIET_READY "):
                url = json.loads(line.split(" ", 1)[1])["url"]
                break
        if not url:
            print("the dev server did not start", file=sys.stderr)
            return 1
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            for kind, width in WIDTHS.items():
                for code in LANGUAGES:
                    ctx = browser.new_context(
                        base_url=url, viewport={"width": width, "height": 900}
                    )
                    page = ctx.new_page()
                    page.goto("/login")
                    page.screenshot(path=str(OUT / f"login-{code}-{kind}.png"), full_page=True)
                    page.locator("input[type=email], input[name=email]").first.fill(EMAIL)
                    page.locator("input[type=password]").first.fill(PASSWORD)
                    page.locator("form:has(input[type=password]) button[type=submit]").first.click()
                    page.wait_for_load_state()
                    page.locator(f"button[name=language][value={code}]").first.click()
                    page.wait_for_load_state()
                    for slug, path in PAGES.items():
                        page.goto(path)
                        page.wait_for_load_state("networkidle")
                        page.screenshot(path=str(OUT / f"{slug}-{code}-{kind}.png"), full_page=True)
                    ctx.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"screenshots in {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
