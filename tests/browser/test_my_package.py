"""My package in a real browser: languages, accessibility, keyboard, log-in redirect."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Locator, Page, expect

from portal import demo
from tests.browser.conftest import Contexts, LiveServer, axe, describe, login, serious


def demo_login(prefix: str) -> str:
    return next(login.email for login in demo.LOGINS if login.email.startswith(prefix))


STANDARD = demo_login("standard@")  # Standard, monthly, 3 agents, PLN, Polish
PRO = demo_login("pro@")  # Pro, yearly, EUR, English

POLISH = {
    "my_package": "Mój pakiet",
    "package": "Pakiet",
    "period": "Okres rozliczeniowy",
    "monthly": "Miesięczny",
    "agents": "3 agentów",
    "log_in": "Zaloguj się",
    "log_out": "Wyloguj się",
}
ENGLISH = {
    "my_package": "My package",
    "package": "Package",
    "period": "Billing period",
    "monthly": "Monthly",
    "agents": "3 agents",
    "log_in": "Log in",
    "log_out": "Log out",
}


def fact(page: Page, term: str) -> Locator:
    """The value (``dd``) the package card gives for ``term`` (its ``dt``)."""
    dt = page.locator("#package dl dt").filter(has_text=re.compile(rf"^\s*{re.escape(term)}\s*$"))
    return dt.locator("xpath=following-sibling::dd[1]")


def expect_my_package(page: Page, words: dict[str, str], language: str) -> None:
    expect(page).to_have_url(re.compile(r"/package(#[^/]*)?$"))
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(page.get_by_role("heading", level=1)).to_have_text(words["my_package"])
    nav = page.get_by_role("navigation")
    expect(nav.get_by_role("link", name=words["my_package"])).to_have_attribute(
        "aria-current", "page"
    )
    expect(nav.get_by_role("button", name=words["log_out"])).to_be_visible()


def expect_standard_facts(page: Page, words: dict[str, str]) -> None:
    expect(fact(page, words["package"])).to_have_text("Standard")
    expect(fact(page, words["period"])).to_have_text(words["monthly"])
    expect(page.locator("#package")).to_contain_text(words["agents"])
    expect(page.locator("#package")).to_contain_text("PLN")


def switch_language(page: Page, name: str) -> None:
    page.get_by_role("navigation").get_by_role("button", name=name, exact=True).click()
    page.wait_for_load_state()


# --- languages -----------------------------------------------------------------------


def test_standard_user_sees_my_package_in_polish(page: Page) -> None:
    login(page, STANDARD)
    expect_my_package(page, POLISH, "pl")
    expect_standard_facts(page, POLISH)


def test_language_switcher_changes_and_remembers_the_language(
    page: Page, contexts: Contexts, live_server: LiveServer
) -> None:
    login(page, STANDARD)
    expect_my_package(page, POLISH, "pl")
    switcher = page.get_by_role("navigation")
    expect(switcher.get_by_role("button", name="Polski")).to_have_attribute("aria-pressed", "true")

    switch_language(page, "English")
    expect_my_package(page, ENGLISH, "en")
    expect_standard_facts(page, ENGLISH)
    expect(switcher.get_by_role("button", name="English")).to_have_attribute("aria-pressed", "true")
    expect(switcher.get_by_role("button", name="Polski")).to_have_attribute("aria-pressed", "false")

    page.reload()
    expect_my_package(page, ENGLISH, "en")
    expect_standard_facts(page, ENGLISH)

    # Stored on the user, so it follows them to a browser that never saw the switcher.
    assert live_server.user(STANDARD).language == "en"
    elsewhere = contexts.new_page()
    login(elsewhere, STANDARD)
    expect_my_package(elsewhere, ENGLISH, "en")

    switch_language(page, "Polski")
    expect_my_package(page, POLISH, "pl")
    expect_standard_facts(page, POLISH)


def test_pro_user_with_english_preference_sees_english(page: Page) -> None:
    # The browser asks for Polish (pl-PL); the user's own preference wins.
    login(page, PRO)
    expect_my_package(page, ENGLISH, "en")
    expect(fact(page, "Package")).to_have_text("Pro")
    expect(fact(page, "Billing period")).to_have_text("Yearly")
    expect(page.locator("#package")).to_contain_text("EUR")


@pytest.mark.parametrize("context_options", [{"locale": "en-US"}])
def test_english_browser_gets_the_login_page_in_english(page: Page) -> None:
    page.goto("/login")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")


# --- logged out ----------------------------------------------------------------------


def test_logged_out_visit_to_package_lands_on_login_then_returns(page: Page) -> None:
    page.goto("/package")
    assert urlsplit(page.url).path == "/login"
    expect(page.get_by_role("heading", level=1)).to_have_text(POLISH["log_in"])

    login(page, STANDARD)  # on the page it was sent to, so ``next`` is kept
    expect_my_package(page, POLISH, "pl")

    page.get_by_role("navigation").get_by_role("button", name=POLISH["log_out"]).click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/package")
    assert urlsplit(page.url).path == "/login"


@pytest.mark.parametrize("context_options", [{"java_script_enabled": False}])
def test_log_in_and_switch_language_without_javascript(page: Page) -> None:
    login(page, STANDARD)
    expect_my_package(page, POLISH, "pl")
    switch_language(page, "English")
    expect_my_package(page, ENGLISH, "en")


# --- accessibility -------------------------------------------------------------------


def assert_no_serious_violations(page: Page, where: str) -> None:
    found = serious(axe(page))
    assert not found, f"axe-core: serious/critical violations on {where}:\n{describe(found)}"


def test_axe_login_page(page: Page) -> None:
    page.goto("/login")
    expect(page.locator("html")).to_have_attribute("lang", "pl")
    assert_no_serious_violations(page, "the login page (pl)")


@pytest.mark.parametrize(
    ("button", "words", "language"),
    [(None, POLISH, "pl"), ("English", ENGLISH, "en")],
    ids=["pl", "en"],
)
def test_axe_my_package(
    page: Page, button: str | None, words: dict[str, str], language: str
) -> None:
    login(page, STANDARD)
    if button:
        switch_language(page, button)
    expect_my_package(page, words, language)
    assert_no_serious_violations(page, f"My package ({language})")


# --- keyboard ------------------------------------------------------------------------


def focused(page: Page) -> dict[str, Any]:
    info: dict[str, Any] = page.evaluate(
        """() => {
            const el = document.activeElement;
            const box = el.getBoundingClientRect();
            return {
                tag: el.tagName.toLowerCase(), id: el.id, name: el.getAttribute("name"),
                cls: el.className, href: el.getAttribute("href"), text: el.innerText,
                x: box.x, y: box.y, width: box.width, height: box.height,
            };
        }"""
    )
    return info


def test_skip_link_comes_first_and_the_login_form_works_by_keyboard(page: Page) -> None:
    page.goto("/login")

    page.keyboard.press("Tab")
    skip = focused(page)
    assert skip["tag"] == "a" and skip["href"] == "#main", f"first tab stop: {skip}"
    assert skip["x"] >= 0 and skip["y"] >= 0 and skip["width"] > 0, (
        f"the focused skip link is off screen: {skip}"
    )

    page.keyboard.press("Enter")  # follow the skip link: focus moves to <main>
    assert focused(page)["id"] == "main"

    page.keyboard.press("Tab")
    assert focused(page)["name"] == "email", focused(page)
    page.keyboard.type(STANDARD)
    page.keyboard.press("Tab")
    assert focused(page)["name"] == "password", focused(page)
    page.keyboard.type(demo.PASSWORD)
    page.keyboard.press("Tab")
    button = focused(page)
    assert button["tag"] == "button" and button["text"].strip() == POLISH["log_in"], button
    page.keyboard.press("Enter")

    expect_my_package(page, POLISH, "pl")
    expect_standard_facts(page, POLISH)
