"""Page weight (issue 9, point 3): the checkout page's first load — HTML, CSS, JS, fonts,
as gzip would send them — stays within 45 KB, and nothing is asked of another host."""

from __future__ import annotations

import gzip
from urllib.parse import urlsplit

from playwright.sync_api import Page

from tests.browser.conftest import LiveServer, login

LIMIT = 45 * 1024


def test_checkout_first_load_is_at_most_45_kb_gzipped_from_this_host_only(
    page: Page, live_server: LiveServer
) -> None:
    login(page, "standard@demo.example.com")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})  # a first visit
    responses = []
    page.on("response", lambda response: responses.append(response))

    page.goto("/package/edit")
    page.wait_for_load_state("networkidle")

    weights: dict[str, int] = {}
    for response in responses:
        assert urlsplit(response.url).hostname == urlsplit(live_server.url).hostname
        if 300 <= response.status < 400:
            continue
        weights[urlsplit(response.url).path] = len(gzip.compress(response.body(), 6))
    assert "/package/edit" in weights and any(p.endswith(".css") for p in weights)
    assert any(p.endswith(".js") for p in weights)
    total = sum(weights.values())
    assert total <= LIMIT, f"{total} bytes gzipped: {weights}"
