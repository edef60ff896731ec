"""The back office in a real browser (issue 8): staff switch a yearly account to monthly;
the customer sees the scheduled change on My package; a customer is refused at /admin."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from portal.infra.extensions import db
from portal.infra.models import Account
from tests.browser.conftest import Contexts, LiveServer, login
from tests.rules.test_revenue import paid


def test_staff_switch_a_yearly_account_to_monthly_and_the_customer_sees_it(
    page: Page, contexts: Contexts
) -> None:
    login(page, "admin@demo.example.com")
    page.goto("/admin/accounts/")
    row = page.get_by_role("row").filter(has_text="Alpine Tours GmbH")
    row.get_by_role("link").filter(has_text="#").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Alpine Tours GmbH")
    page.get_by_role("link", name="Przełącz na okres miesięczny od następnego odnowienia").click()
    expect(page.get_by_text("rozpocznie okres miesięczny")).to_be_visible()
    page.get_by_role("button", name="Potwierdź").click()
    expect(
        page.get_by_text("Zaplanowano: okres miesięczny od następnego odnowienia.")
    ).to_be_visible()
    # The switch is gone from the account page: it is scheduled.
    expect(
        page.get_by_role("link", name="Przełącz na okres miesięczny od następnego odnowienia")
    ).to_have_count(0)

    customer = contexts.new_page()
    login(customer, "pro@demo.example.com")  # an English-speaking account
    customer.goto("/package")
    package = customer.locator("#package")
    expect(package).to_contain_text("Scheduled change")
    expect(package).to_contain_text("Billing period Monthly from the renewal on")

    response = customer.goto("/admin/")
    assert response is not None and response.status == 403
    response = customer.goto("/admin/subscriptions/")
    assert response is not None and response.status == 403


def test_staff_switch_language_and_sign_out_in_the_admin_in_the_portals_look(
    page: Page,
) -> None:
    login(page, "admin@demo.example.com")
    page.goto("/admin/subscriptions/")
    font = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert font.startswith("system-ui"), font
    page.get_by_role("button", name="English").click()
    expect(page).to_have_url("/admin/subscriptions/")
    expect(page.locator("table.model-list")).to_contain_text("Monthly")
    expect(page.locator("table.model-list")).not_to_contain_text("month ")
    page.get_by_role("button", name="Log out").click()
    response = page.goto("/admin/")
    assert response is not None
    expect(page).to_have_url(re.compile(r"/login\?next=/admin/"))


def test_the_dashboard_draws_its_charts_under_the_production_policy(
    page: Page, live_server: LiveServer, tmp_path: Path
) -> None:
    """The 12 months as server-rendered SVG: no script, no third party, no CSP complaint
    (the harness fails the test on any console CSP violation or foreign request)."""
    today = dt.date.today()  # the live server's demo data is dated from today
    with live_server.app.app_context():
        account = Account(name="Chart GmbH")
        db.session.add(account)
        db.session.flush()
        start = today - dt.timedelta(days=40)
        paid(account, start, start + dt.timedelta(days=30), 26700)
        paid(account, start + dt.timedelta(days=30), start + dt.timedelta(days=60), 26700)
        db.session.commit()
        db.session.remove()
    login(page, "admin@demo.example.com")
    page.goto("/admin/")
    page.get_by_role("button", name="English").click()
    chart = page.get_by_role("img", name="MRR in PLN over the last 12 months")
    expect(chart).to_be_visible()
    assert chart.locator("rect").count() == 12
    tallest = max(int(chart.locator("rect").nth(i).get_attribute("height") or 0) for i in range(12))
    assert tallest == 120
    expect(page.get_by_role("img", name="New and churned subscriptions per month")).to_be_visible()
    table = page.get_by_role("table", name="The last 12 months, month by month")
    expect(table.get_by_role("row")).to_have_count(13)
    expect(table).to_contain_text("PLN 267.00")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
