"""Edit package (issue 3) in a real browser: the live summary, keyboard, no JavaScript, axe.

Every amount a test expects is what the server computes for the same form
(``checkout.parse`` and ``checkout.summarise`` on the live app), formatted as the
page formats it, so the tests hold whatever day they run on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from playwright.sync_api import APIResponse, Locator, Page, Route, expect
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from portal import demo
from portal.infra.extensions import db
from portal.rules import accounts
from portal.web import checkout
from tests.browser.conftest import (
    Contexts,
    LiveServer,
    axe,
    describe,
    login,
    page_language,
    serious,
    translate,
)


def demo_login(prefix: str) -> str:
    return next(login.email for login in demo.LOGINS if login.email.startswith(prefix))


STANDARD = demo_login("standard@")  # Standard, monthly, 3 agents, 100 conversations, PLN, pl
PRO = demo_login("pro@")  # Pro, yearly, 8 agents, 1500 conversations, EUR, en


@dataclass(frozen=True)
class Words:
    """What the checkout pages say in one language."""

    code: str
    switch_to: str | None  # the language switcher's button, if the user must press it
    edit: str
    heading: str
    monthly: str
    yearly: str
    activate_pro: str
    agents: str
    conversations: str
    agents_change: str
    packs: str
    period_change: str
    package_line: str  # the summary's package line after switching to yearly
    update: str
    pay: str  # "Pay %(amount)s" in this language
    order: str


POLISH = Words(
    code="pl",
    switch_to=None,
    edit="Edytuj",
    heading="Edytuj pakiet",
    monthly="Miesięczny",
    yearly="Roczny",
    activate_pro="Aktywuj Pro",
    agents="Agenci",
    conversations="Rozmowy z czatbotem miesięcznie",
    agents_change="Agenci: 3 → 5",
    packs="2 pakiety po 100",
    period_change="Okres rozliczeniowy: Miesięczny → Roczny",
    package_line="Pakiet Standard, rocznie",
    update="Odśwież podsumowanie",
    pay="Zapłać {amount}",
    order="Twoje zamówienie",
)
ENGLISH = Words(
    code="en",
    switch_to="English",
    edit="Edit",
    heading="Edit package",
    monthly="Monthly",
    yearly="Yearly",
    activate_pro="Activate Pro",
    agents="Agents",
    conversations="Chatbot conversations per month",
    agents_change="Agents: 3 → 5",
    packs="2 packs of 100",
    period_change="Billing period: Monthly → Yearly",
    package_line="Standard package, yearly",
    update="Update summary",
    pay="Pay {amount}",
    order="Your order",
)
LANGUAGES = pytest.mark.parametrize("words", [POLISH, ENGLISH], ids=["pl", "en"])
NO_JAVASCRIPT = pytest.mark.parametrize(
    "context_options", [{"java_script_enabled": False}], ids=["nojs"]
)


# --- helpers -------------------------------------------------------------------------


def server_total(live_server: LiveServer, email: str, words: Words, **fields: Any) -> str:
    """The total due the server computes for these form fields, as the page shows it.

    Fields left out keep the current subscription, as in the real form.
    """
    with live_server.app.test_request_context():
        user = accounts.find_user(email)
        assert user is not None and user.account is not None, email
        account = user.account
        catalogue = live_server.app.extensions["pakiet.catalogue"]
        form = checkout.parse({k: str(v) for k, v in fields.items()}, account, catalogue)
        quote, _tax = checkout.summarise(account, form)
        db.session.remove()
    assert quote is not None and quote.payable, f"{fields} is not payable: {form.errors}"
    return quote.total_due.format(words.code)


def summary(page: Page) -> Locator:
    return page.locator("#summary")


def pay_button(page: Page) -> Locator:
    return summary(page).locator("button[name=action][value=pay]")


def total_due(page: Page) -> Locator:
    return summary(page).get_by_test_id("total-due")


def spinbutton(page: Page, label: str) -> Locator:
    # The <label> wraps the help text too, so the accessible name only starts with it.
    return page.get_by_role("spinbutton", name=re.compile(rf"^{re.escape(label)}\b"))


def expect_amounts(page: Page, words: Words, amount: str) -> None:
    """The Pay button and the summary's total both show the server's ``amount``."""
    expect(pay_button(page)).to_have_text(words.pay.format(amount=amount))
    expect(pay_button(page)).to_be_enabled()
    expect(total_due(page)).to_have_text(amount)


def change_line(page: Page, text: str) -> Locator:
    return summary(page).locator("ul.changes > li").filter(has_text=text)


def switch_language(page: Page, name: str) -> None:
    page.get_by_role("navigation").get_by_role("button", name=name, exact=True).click()
    page.wait_for_load_state()


def open_edit_page(page: Page, words: Words, email: str = STANDARD) -> None:
    """Log in, (switch the language,) and follow My package's Edit button."""
    login(page, email)
    if words.switch_to and page_language(page) != words.code:
        switch_language(page, words.switch_to)
    expect(page.locator("html")).to_have_attribute("lang", words.code)
    # The Edit "button" is a link styled by Pico as one (role="button").
    page.locator("#package").get_by_role("button", name=words.edit, exact=True).click()
    expect(page).to_have_url(re.compile(r"/package/edit$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(words.heading)


def goto_edit_page(page: Page, words: Words, **fields: Any) -> None:
    """Log in and open the edit page straight away, prefilled with ``fields``.

    The page renders the summary for a query string (as the order page's "Review and pay
    the new price" link does), so no live update has to be waited for.
    """
    login(page, STANDARD)
    if words.switch_to:
        switch_language(page, words.switch_to)
    page.goto("/package/edit" + (f"?{urlencode(fields)}" if fields else ""))
    expect(page.get_by_role("heading", level=1)).to_have_text(words.heading)


def expect_order_page(page: Page, words: Words, amount: str) -> None:
    expect(page).to_have_url(re.compile(r"/package/orders/[0-9a-f]{32}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(words.order)
    expect(page.get_by_test_id("total-due")).to_have_text(amount)


def assert_no_serious_violations(page: Page, where: str) -> None:
    found = serious(axe(page))
    assert not found, f"axe-core: serious/critical violations on {where}:\n{describe(found)}"


# --- 1. the live summary -------------------------------------------------------------


@LANGUAGES
def test_live_summary_follows_the_form_without_a_page_load(
    page: Page, contexts: Contexts, live_server: LiveServer, words: Words
) -> None:
    open_edit_page(page, words)
    navigations: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
    )
    page.evaluate("() => { window.pakietSamePage = true; }")
    expect(pay_button(page)).to_be_disabled()  # nothing changed yet

    agents = spinbutton(page, words.agents)
    agents.select_text()
    agents.press_sequentially("5")
    expect(change_line(page, words.agents_change)).to_contain_text("(+2)")
    expect_amounts(page, words, server_total(live_server, STANDARD, words, agents=5))

    conversations = spinbutton(page, words.conversations)
    conversations.select_text()
    conversations.press_sequentially("300")
    expect(summary(page).locator("table")).to_contain_text(words.packs)
    monthly = server_total(live_server, STANDARD, words, agents=5, conversations=300)
    expect_amounts(page, words, monthly)

    page.get_by_role("radio", name=words.yearly, exact=True).check()
    expect(change_line(page, words.period_change)).to_be_visible()
    expect(summary(page).locator("table")).to_contain_text(words.package_line)
    yearly = server_total(live_server, STANDARD, words, agents=5, conversations=300, period="year")
    assert yearly != monthly
    expect_amounts(page, words, yearly)
    expect(change_line(page, words.agents_change)).to_contain_text("(+2)")

    # All of that happened in the page the browser loaded first, through HTMX.
    assert page.evaluate("() => window.pakietSamePage === true"), "the page was reloaded"
    assert navigations == [], f"the browser navigated: {navigations}"
    requests = contexts.log(page.context).requests
    assert any(urlsplit(url).path == "/package/summary" for url in requests), requests
    assert not contexts.log(page.context).foreign


# --- 2. keyboard only ----------------------------------------------------------------

ACTIVE = """() => {
    const el = document.activeElement;
    return {
        tag: el.tagName.toLowerCase(), name: el.getAttribute("name"), value: el.value ?? null,
        checked: el.checked ?? null, text: el.innerText.trim(), id: el.id,
    };
}"""

# True once the focused element shows a focus indicator: an outline, or a box-shadow
# ring (Pico's) that is at least 1px and not (nearly) transparent. Pico animates the
# ring in, so callers wait for this rather than reading the style once.
FOCUS_RING = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return false;
    const style = getComputedStyle(el);
    const alpha = (color) => {
        const parts = (color.match(/rgba?\\(([^)]*)\\)/) || [null, ""])[1]
            .split(/[\\s,\\/]+/).filter(Boolean);
        return parts.length > 3 ? parseFloat(parts[3]) : 1;
    };
    const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 1
        && alpha(style.outlineColor) >= 0.2;
    const ring = style.boxShadow !== "none" && style.boxShadow.split(/,(?![^(]*\\))/)
        .some((shadow) => {
            const color = (shadow.match(/rgba?\\([^)]*\\)/) || ["rgb(0, 0, 0)"])[0];
            const lengths = shadow.replace(color, "").trim().split(/\\s+/).map(parseFloat);
            return alpha(color) >= 0.2 && ((lengths[3] || 0) >= 1 || (lengths[2] || 0) >= 1);
        });
    return outline || ring;
}"""


def active(page: Page) -> dict[str, Any]:
    info: dict[str, Any] = page.evaluate(ACTIVE)
    return info


def press(page: Page, key: str, **expected: Any) -> dict[str, Any]:
    """Press ``key``; check what has focus now and that it shows a focus indicator."""
    page.keyboard.press(key)
    now = active(page)
    assert expected.items() <= now.items(), f"after {key}: focus is on {now}, not {expected}"
    try:
        page.wait_for_function(FOCUS_RING)
    except PlaywrightTimeoutError:
        style = page.evaluate(
            """() => { const s = getComputedStyle(document.activeElement);
                       return [s.outlineStyle, s.outlineWidth, s.outlineColor, s.boxShadow]; }"""
        )
        raise AssertionError(f"after {key}: no visible focus indicator on {now}: {style}") from None
    return now


def retype(page: Page, digits: str) -> None:
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type(digits)


@LANGUAGES
def test_keyboard_only_change_and_pay(page: Page, live_server: LiveServer, words: Words) -> None:
    goto_edit_page(page, words)

    # From here on: page.keyboard only.
    press(page, "Tab", tag="a")  # the skip link
    page.keyboard.press("Enter")
    assert active(page)["id"] == "main"

    press(page, "Tab", name="period", value="month", checked=True)
    press(page, "ArrowRight", name="period", value="year", checked=True)
    press(page, "Tab", name="package", value="standard", checked=True)
    press(page, "ArrowRight", name="package", value="pro", checked=True)
    press(page, "Tab", name="agents")
    retype(page, "5")
    # Pro includes 500 conversations a month: the summary brought the Standard 100 up to
    # that (and swapped the field in). One more pack, by keyboard.
    expect(spinbutton(page, words.conversations)).to_have_value("500")
    press(page, "Tab", name="conversations")
    retype(page, "600")
    fields = {"package": "pro", "period": "year", "agents": 5, "conversations": 600}
    amount = server_total(live_server, STANDARD, words, **fields)
    expect_amounts(page, words, amount)
    expect(change_line(page, words.agents_change)).to_contain_text("(+2)")

    # Leaving the field fires "change": one more summary request, with the same answer.
    # Let it land before focusing Pay, which the swap replaces.
    page.evaluate("() => { document.getElementById('summary').dataset.old = 'yes'; }")
    with page.expect_response(lambda r: urlsplit(r.url).path == "/package/summary"):
        press(page, "Tab", name="action", value="preview", text=words.update)
    expect(page.locator("#summary[data-old]")).to_have_count(0)
    expect_amounts(page, words, amount)

    pay = {"name": "action", "value": "pay", "text": words.pay.format(amount=amount)}
    press(page, "Tab", **pay)
    press(page, "Shift+Tab", name="action", value="preview")  # and back again
    press(page, "Tab", **pay)
    page.keyboard.press("Space")
    expect_order_page(page, words, amount)
    # Where the keyboard user lands must be as accessible as the page they left.
    assert_no_serious_violations(page, f"the order page ({words.code})")


# --- 3. without JavaScript -----------------------------------------------------------


@NO_JAVASCRIPT
@LANGUAGES
def test_without_javascript_update_summary_then_pay(
    page: Page, contexts: Contexts, live_server: LiveServer, words: Words
) -> None:
    open_edit_page(page, words)
    spinbutton(page, words.agents).fill("5")
    page.get_by_role("button", name=words.update, exact=True).click()

    expect(page.get_by_role("heading", level=1)).to_have_text(words.heading)
    expect(change_line(page, words.agents_change)).to_contain_text("(+2)")
    expect(spinbutton(page, words.agents)).to_have_value("5")
    amount = server_total(live_server, STANDARD, words, agents=5)
    expect_amounts(page, words, amount)

    # The same change through the live (HTMX) summary, in a browser with JavaScript.
    live = contexts.new_page(java_script_enabled=True)
    login(live, STANDARD)  # the language was stored on the user above
    live.goto("/package/edit")
    spinbutton(live, words.agents).fill("5")
    expect(change_line(live, words.agents_change)).to_contain_text("(+2)")
    expect(total_due(live)).to_have_text(total_due(page).inner_text())
    expect(pay_button(live)).to_have_text(pay_button(page).inner_text())

    page.get_by_role("button", name=words.pay.format(amount=amount), exact=True).click()
    expect_order_page(page, words, amount)


# --- 4. yearly to monthly is not self-service ----------------------------------------


def test_pro_yearly_user_cannot_switch_to_monthly_self_service(page: Page) -> None:
    open_edit_page(page, ENGLISH, PRO)  # English is the Pro user's own language
    period = page.get_by_role("group", name="Billing period")
    monthly = period.get_by_role("radio", name="Monthly", exact=True)
    expect(monthly).to_be_disabled()
    expect(monthly).not_to_be_checked()
    expect(monthly).to_have_accessible_description(
        re.compile(r"Switching from yearly to monthly is done by our support team\.")
    )
    expect(period.get_by_role("radio", name="Yearly", exact=True)).to_be_checked()
    support = period.get_by_role("link", name="Contact support", exact=True)
    expect(support).to_be_visible()
    expect(support).to_have_attribute("href", re.compile(r"^mailto:\S+@\S+$"))


# --- a refused or invalid form replaces the previous summary (and disables Pay) ---


@pytest.mark.parametrize("case", ["refused by the server", "invalid in the browser"])
def test_live_summary_shows_what_is_wrong_instead_of_the_previous_price(
    page: Page, live_server: LiveServer, case: str
) -> None:
    goto_edit_page(page, POLISH, agents=5)
    expect_amounts(page, POLISH, server_total(live_server, STANDARD, POLISH, agents=5))

    if case == "refused by the server":
        # Conversations are sold in packs of 100: 150 is refused by the server.
        spinbutton(page, POLISH.conversations).fill("150")
        message = "Rozmowy z czatbotem są sprzedawane w pakietach po 100."
    else:
        spinbutton(page, POLISH.agents).fill("0")  # below min="1"
        message = "Wybierz od 1 do 200 agentów."

    # Short waits: with the bug they can only time out (the debounce is 400 ms).
    expect(summary(page).get_by_role("alert")).to_contain_text(message, timeout=1_500)
    expect(pay_button(page)).to_be_disabled(timeout=250)


# --- 5. accessibility ----------------------------------------------------------------


@LANGUAGES
def test_axe_edit_page(page: Page, words: Words) -> None:
    goto_edit_page(page, words)
    assert_no_serious_violations(page, f"the edit page ({words.code})")
    # Again with a change, so the summary's list, table and enabled Pay are scanned too.
    page.goto("/package/edit?agents=5")
    expect(change_line(page, words.agents_change)).to_contain_text("(+2)")
    expect(total_due(page)).to_be_visible()
    assert_no_serious_violations(page, f"the edit page with a summary ({words.code})")


# --- 6. the summary is what will happen ----------------------------------------------


@LANGUAGES
def test_switching_to_pro_brings_conversations_into_its_range(
    page: Page, live_server: LiveServer, words: Words
) -> None:
    goto_edit_page(page, words)
    page.get_by_role("radio", name=words.activate_pro, exact=True).check()
    # Not refused: the 100 conversations of Standard become Pro's included 500, in the field
    # and in the summary, which says so.
    expect(spinbutton(page, words.conversations)).to_have_value("500")
    expect(summary(page).get_by_role("status")).to_contain_text("500")
    fields = {"package": "pro", "conversations": 500}
    expect_amounts(page, words, server_total(live_server, STANDARD, words, **fields))


@LANGUAGES
def test_back_to_the_edit_page_shows_a_summary_of_the_form_shown(
    page: Page, live_server: LiveServer, words: Words
) -> None:
    """Leave the edit page after changing the form and come back with Back: the summary
    matches the form the browser restored (it used to say "nothing to change")."""
    goto_edit_page(page, words)
    agents = spinbutton(page, words.agents)
    agents.fill("6")
    amount = server_total(live_server, STANDARD, words, agents=6)
    expect_amounts(page, words, amount)
    page.get_by_role("navigation").get_by_role("link").first.click()  # another page
    expect(page).not_to_have_url(re.compile(r"/package/edit"))
    page.go_back()
    expect(page).to_have_url(re.compile(r"/package/edit"))
    # Chromium restores what was typed; the summary is brought up to date with it.
    expect(spinbutton(page, words.agents)).to_have_value("6")
    expect(change_line(page, "3 → 6")).to_be_visible()
    expect_amounts(page, words, amount)


@LANGUAGES
def test_typing_and_pressing_pay_at_once_never_blames_a_price_change(
    page: Page, live_server: LiveServer, words: Words
) -> None:
    goto_edit_page(page, words, agents=5)
    expect_amounts(page, words, server_total(live_server, STANDARD, words, agents=5))
    agents = spinbutton(page, words.agents)
    agents.select_text()
    agents.press_sequentially("7")
    pay_button(page).click()  # before the summary (400 ms later) caught up
    changed = translate(
        words.code,
        "The price or your package changed since you opened this page. "
        "Please check the new summary before you pay.",
    )
    amount = server_total(live_server, STANDARD, words, agents=7)
    # The edit page again, with the price of 7 agents and a calm word, not a warning.
    expect(page.get_by_role("heading", level=1)).to_have_text(words.heading)
    notice = translate(
        words.code, "The summary now shows the price of what you entered. Check it, then press Pay."
    )
    expect(summary(page).get_by_role("alert")).to_have_text(notice)
    expect(page.locator("body")).not_to_contain_text(changed)
    expect(change_line(page, "3 → 7")).to_be_visible()
    expect_amounts(page, words, amount)
    pay_button(page).click()
    expect_order_page(page, words, amount)


@LANGUAGES
def test_a_summary_arriving_while_pay_is_pressed_does_not_swallow_the_click(
    page: Page, live_server: LiveServer, words: Words
) -> None:
    """The press of Pay and the release fall on the same button even when a summary comes
    back in between (a person's click lasts ~100 ms; the old page lost it: 'Pay did nothing')."""
    goto_edit_page(page, words, agents=5)
    amount = server_total(live_server, STANDARD, words, agents=5)
    expect_amounts(page, words, amount)
    pay_button(page).scroll_into_view_if_needed()
    box = pay_button(page).bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    # A summary answer arrives while the button is held down.
    with page.expect_response(lambda r: urlsplit(r.url).path == "/package/summary"):
        page.evaluate("htmx.trigger(document.getElementById('checkout'), 'refresh')")
    page.wait_for_timeout(100)  # htmx swaps right after the answer
    page.mouse.up()
    expect_order_page(page, words, amount)


@LANGUAGES
def test_a_summary_arriving_while_pay_has_the_focus_keeps_it_there(
    page: Page, live_server: LiveServer, words: Words
) -> None:
    """A keyboard user who reached Pay stays on Pay when a summary lands (the old one went to
    the page's body: the next Tab started again at the top)."""
    goto_edit_page(page, words, agents=5)
    amount = server_total(live_server, STANDARD, words, agents=5)
    expect_amounts(page, words, amount)
    pay_button(page).focus()
    page.evaluate("() => { document.getElementById('summary').dataset.old = 'yes'; }")
    with page.expect_response(lambda r: urlsplit(r.url).path == "/package/summary"):
        page.evaluate("htmx.trigger(document.getElementById('checkout'), 'refresh')")
    expect(page.locator("#summary[data-old]")).to_have_count(0)  # swapped: a new button
    expect(pay_button(page)).to_be_focused()
    page.keyboard.press("Enter")
    expect_order_page(page, words, amount)


@LANGUAGES
def test_an_older_summary_never_lands_after_a_newer_one(
    page: Page, live_server: LiveServer, words: Words
) -> None:
    """The summary for 6 agents is held back on its way to the page while the customer goes
    on to 7: the page ends with 7 agents' price, whenever the older answer arrives (each
    new summary request replaces one in flight; before, CI saw four stale answers land
    last and leave Pay disabled)."""
    goto_edit_page(page, words, agents=5)
    expect_amounts(page, words, server_total(live_server, STANDARD, words, agents=5))
    held: list[tuple[Route, APIResponse]] = []

    def hold_the_first(route: Route) -> None:
        if not held:
            held.append((route, route.fetch()))  # the server's answer, not given yet
        else:
            route.continue_()

    page.route("**/package/summary", hold_the_first)
    agents = spinbutton(page, words.agents)
    agents.select_text()
    agents.press_sequentially("6")
    for _ in range(100):  # its request leaves 400 ms after the last key
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "no summary was asked for"
    agents.select_text()
    agents.press_sequentially("7")
    seven = server_total(live_server, STANDARD, words, agents=7)
    expect_amounts(page, words, seven)
    route, answer = held[0]
    try:
        route.fulfill(response=answer)  # the older answer arrives now
    except PlaywrightError:
        pass  # the browser had dropped the request: the newer one replaced it
    page.wait_for_timeout(500)
    expect_amounts(page, words, seven)
    expect(change_line(page, "3 → 7")).to_be_visible()
