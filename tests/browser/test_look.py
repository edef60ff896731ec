"""The customer look in a real browser (issue 25, point 6): a one-row header at desktop,
the checkout in two columns with the summary in view, the current package marked, nothing
wider than a 390 px phone, focus rings that can be seen."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import Page, expect

from portal import demo
from tests.browser.conftest import Contexts, login

STANDARD = next(x.email for x in demo.LOGINS if x.email.startswith("standard@"))
CUSTOMER_PAGES = [
    "/package",
    "/package/edit",
    "/invoices",
    # The demo's purchases are of this year (the portal runs on the wall clock): the
    # filters with the year's ZIP button.
    f"/invoices?year={dt.date.today().year}",
    "/payments",
    "/billing",
    "/payment-methods",
    "/support",
    "/password",
]
PUBLIC_PAGES = ["/login", "/signup", "/password/forgot"]


def _relative_luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _rgb(css: str) -> tuple[int, int, int]:
    numbers = [int(float(n)) for n in re.findall(r"[\d.]+", css)[:3]]
    return numbers[0], numbers[1], numbers[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_relative_luminance(_rgb(a)), _relative_luminance(_rgb(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def overflow(page: Page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


@pytest.mark.parametrize("locale", ["pl-PL", "en-GB"])
def test_header_is_one_row_at_desktop(contexts: Contexts, locale: str) -> None:
    page = contexts.new_page(locale=locale, viewport={"width": 1280, "height": 900})
    login(page, STANDARD)
    if locale == "en-GB":
        page.get_by_role("navigation").get_by_role("button", name="English", exact=True).click()
        page.wait_for_load_state()
    for path in CUSTOMER_PAGES:
        response = page.goto(path)
        assert response is not None and response.ok, path
        items = page.locator("header.site-header nav li")
        tops = {
            round(box["y"])
            for box in (items.nth(i).bounding_box() for i in range(items.count()))
            if box
        }
        header = page.locator("header.site-header").bounding_box()
        assert header is not None
        assert max(tops) - min(tops) <= 8, f"{path}: header items on several rows {sorted(tops)}"
        assert header["height"] <= 90, f"{path}: header {header['height']} px high"
        assert overflow(page) <= 1280, f"{path}: {overflow(page)} px wide at 1280 px"


@pytest.mark.parametrize("language", ["Polski", "English"])
def test_nothing_overflows_a_phone(contexts: Contexts, language: str) -> None:
    page = contexts.new_page(viewport={"width": 390, "height": 844})
    for path in PUBLIC_PAGES:
        response = page.goto(path)
        assert response is not None and response.ok, path
        assert overflow(page) <= 390, f"{path} is {overflow(page)} px wide"
    login(page, STANDARD)
    page.get_by_role("navigation").get_by_role("button", name=language, exact=True).click()
    page.wait_for_load_state()
    for path in CUSTOMER_PAGES:
        response = page.goto(path)
        assert response is not None and response.ok, path
        assert overflow(page) <= 390, f"{path} ({language}) is {overflow(page)} px wide"


def test_checkout_has_two_columns_with_the_summary_in_view(page: Page) -> None:
    login(page, STANDARD)
    page.goto("/package/edit")
    form = page.locator("#checkout fieldset").first.bounding_box()
    summary = page.locator("#summary").bounding_box()
    assert form is not None and summary is not None
    assert summary["x"] >= form["x"] + form["width"], "the summary is not beside the form"
    assert summary["y"] < 600, "the summary starts below the fold"
    page.mouse.wheel(0, 700)
    page.wait_for_timeout(200)
    box = page.locator("#summary").bounding_box()
    assert box is not None and 0 <= box["y"] < 200, "the summary scrolled out of view"
    expect(
        page.locator("#summary").get_by_role("button", name=re.compile("Zapłać|Pay"))
    ).to_be_in_viewport()
    # Every row's amounts end at the same right edge (the hidden unit-price column once
    # shifted the header's and the lines' amounts one column left of the totals').
    page.locator("input[name=agents]").fill("5")
    expect(page.locator("#summary .summary-table")).to_be_visible()
    rights = page.evaluate(
        "() => [...document.querySelectorAll('#summary .summary-table tr')]"
        ".map(r => Math.round(r.lastElementChild.getBoundingClientRect().right))"
    )
    assert len(rights) >= 4 and len(set(rights)) == 1, rights


def test_checkout_is_one_column_on_a_phone(contexts: Contexts) -> None:
    page = contexts.new_page(viewport={"width": 390, "height": 844})
    login(page, STANDARD)
    page.goto("/package/edit")
    form = page.locator("#checkout fieldset").first.bounding_box()
    summary = page.locator("#summary").bounding_box()
    assert form is not None and summary is not None
    assert summary["y"] > form["y"] + form["height"]


def test_current_package_is_marked_not_offered(page: Page) -> None:
    login(page, STANDARD)  # Standard, Polish
    page.goto("/package/edit")
    cards = page.locator(".package-card")
    standard = cards.filter(has=page.get_by_role("heading", name="Standard", exact=True))
    expect(standard).to_contain_text("Twój obecny pakiet")
    expect(standard).not_to_contain_text("Aktywuj")
    others = cards.filter(has_not=page.get_by_role("heading", name="Standard", exact=True))
    expect(others.first).to_contain_text("Aktywuj")


def test_focus_ring_is_visible_with_contrast(page: Page) -> None:
    login(page, STANDARD)
    page.goto("/package")
    link = page.get_by_role("navigation").get_by_role("link").first
    link.focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    style = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return {width: s.outlineWidth, style: s.outlineStyle, color: s.outlineColor,"
        " bg: getComputedStyle(document.documentElement).backgroundColor}; }"
    )
    assert style["style"] != "none" and float(style["width"].rstrip("px")) >= 2, style
    assert contrast(style["color"], style["bg"]) >= 3, style
