"""A portal-session link of the chat product in Chromium, with the production security
headers: the page's button signs the demo's Standard customer in, lands on the invoices
and shows "Back to ..." (docs/integration.md)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from pakiet_vies.emulator import ViesEmulator
from portal import demo
from tests.browser.conftest import LiveServer, live_config, serve

TOKEN = "chat-service-token"
CHAT = "http://127.0.0.1:9/app"
STANDARD = next(login.email for login in demo.LOGINS if login.email.startswith("standard@"))


@pytest.fixture(scope="module")
def live_server(
    migrated_db: str, tmp_path_factory: pytest.TempPathFactory, vies_emulator: ViesEmulator
) -> Iterator[LiveServer]:
    config = live_config(vies_emulator)
    config.update(
        ENTITLEMENTS_TOKENS=[TOKEN], PORTAL_RETURN_URLS=[CHAT], CHAT_PRODUCT_NAME="Czatownik"
    )
    with serve(migrated_db, tmp_path_factory.mktemp("portal-session"), **config) as live:
        yield live


def link(live_server: LiveServer, page: str) -> str:
    user = live_server.user(STANDARD)
    made = live_server.app.test_client().post(
        "/api/v1/portal-sessions",
        json={"account": user.account_id, "page": page, "return_url": CHAT + "/billing"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert made.status_code == 201, made.json
    return urlsplit(made.json["url"]).path


def test_the_link_signs_in_once_and_lands_on_the_invoices(
    page: Page, live_server: LiveServer
) -> None:
    path = link(live_server, "invoices")
    page.goto(path)
    expect(page.get_by_role("heading", name="Otwórz portal rozliczeń")).to_be_visible()
    page.get_by_role("button", name="Przejdź do portalu").click()
    page.wait_for_url(lambda url: urlsplit(url).path == "/invoices")
    back = page.get_by_role("link", name="Wróć do Czatownik")
    expect(back).to_have_attribute("href", CHAT + "/billing")

    # The same link again, in the same browser or another: a clear page, nobody signed in.
    response = page.goto(path)
    assert response is not None and response.status == 410
    expect(page.get_by_role("heading", name="Ten link nie działa")).to_be_visible()
    expect(page.get_by_text("Ten link został już użyty")).to_be_visible()
