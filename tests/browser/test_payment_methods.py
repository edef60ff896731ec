"""Payment methods in a real browser under the production headers: default, remove, confirm."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import demo
from portal.infra.extensions import db
from portal.infra.models import PaymentMethod, Subscription
from tests.browser.conftest import LiveServer, login

STANDARD = next(x.email for x in demo.LOGINS if x.email.startswith("standard@"))


def save_cards(live_server: LiveServer) -> None:
    account_id = live_server.user(STANDARD).account_id
    with live_server.app.app_context():
        for ref, brand, last4, default in (
            ("pm_b_visa", "visa", "4242", True),
            ("pm_b_mc", "mastercard", "5454", False),
        ):
            db.session.add(
                PaymentMethod(
                    account_id=account_id,
                    provider="stripe",
                    provider_ref=ref,
                    customer_ref="cus_b",
                    brand=brand,
                    last4=last4,
                    exp_month=12,
                    exp_year=2031,
                    is_default=default,
                )
            )
        db.session.commit()
        db.session.remove()


def live(live_server: LiveServer) -> dict[str, bool]:
    account_id = live_server.user(STANDARD).account_id
    with live_server.app.app_context():
        rows = db.session.scalars(
            select(PaymentMethod).where(
                PaymentMethod.account_id == account_id, PaymentMethod.removed_at.is_(None)
            )
        ).all()
        result = {str(m.last4): m.is_default for m in rows}
        db.session.remove()
        return result


def auto_renew(live_server: LiveServer) -> bool:
    account_id = live_server.user(STANDARD).account_id
    with live_server.app.app_context():
        on = db.session.scalar(
            select(Subscription.auto_renew).where(Subscription.account_id == account_id)
        )
        db.session.remove()
        return bool(on)


def test_choose_the_default_then_remove_both_methods(page: Page, live_server: LiveServer) -> None:
    save_cards(live_server)
    login(page, STANDARD)
    page.goto("/payment-methods")
    mastercard = page.locator("li.saved-method").filter(has_text="•••• 5454")
    expect(mastercard).to_contain_text("(12/2031)")
    mastercard.get_by_role("button", name="Używaj do odnowień").click()
    expect(page.get_by_role("alert").or_(page.locator(".flash-success"))).to_contain_text(
        "Odnowienia będą opłacane metodą Mastercard •••• 5454"
    )
    assert live(live_server) == {"4242": False, "5454": True}

    page.locator("li.saved-method").filter(has_text="•••• 4242").get_by_role(
        "link", name="Usuń"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Usuwanie metody płatności")
    page.get_by_role("button", name="Usuń metodę płatności").click()
    expect(page.locator("li.saved-method")).to_have_count(1)
    assert live(live_server) == {"5454": True}

    # The last one while auto-renewal is on: the page says what happens and asks to confirm.
    page.locator("li.saved-method").get_by_role("link", name="Usuń").click()
    expect(page.get_by_role("alert")).to_contain_text("automatyczne odnawianie zostanie wyłączone")
    confirm = page.get_by_label("Rozumiem: wyłącz automatyczne odnawianie")
    page.get_by_role("button", name="Usuń metodę płatności").click()  # unchecked: refused
    assert live(live_server) == {"5454": True}
    confirm.check()
    page.get_by_role("button", name="Usuń metodę płatności").click()
    expect(page.locator("li.saved-method")).to_have_count(0)
    assert live(live_server) == {}
    assert auto_renew(live_server) is False
