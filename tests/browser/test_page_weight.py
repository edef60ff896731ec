"""Page weight (issue 9, point 3; issue 26, point 4): the checkout page's first load — HTML,
CSS, JS, fonts, as the portal sends them (gzip-compressed: the bytes on the wire are
counted) — stays within 45 KB, and nothing is asked of another host."""

from __future__ import annotations

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
        path = urlsplit(response.url).path
        body = response.body()
        if len(body) > 500:  # compressed by the portal itself (portal/web/compression.py)
            assert response.all_headers().get("content-encoding") == "gzip", path
        sent = response.request.sizes()["responseBodySize"]  # as it came over the wire
        assert 0 < sent < len(body) or len(body) <= 500, (path, sent, len(body))
        weights[path] = sent
    assert "/package/edit" in weights and any(p.endswith(".css") for p in weights)
    assert any(p.endswith(".js") for p in weights)
    total = sum(weights.values())
    assert total <= LIMIT, f"{total} bytes gzipped: {weights}"
