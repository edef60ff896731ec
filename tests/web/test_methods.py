"""Payment methods page (R8, R10): saved methods and the auto-renewal switch."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from portal import demo
from portal.infra.extensions import db
from portal.infra.models import PaymentMethod, Subscription, User
from tests.conftest import csrf_token

TODAY = dt.date(2026, 11, 26)


@pytest.fixture
def standard(app, client, auth, catalogue):
    with app.app_context():
        demo.load(catalogue, today=TODAY)  # Standard monthly PLN, renews 2026-12-16
    assert auth.login("standard@demo.example.com", demo.PASSWORD).status_code == 302
    return client


def account_id(app, email="standard@demo.example.com") -> int:
    with app.app_context():
        return db.session.scalar(select(User.account_id).where(User.email == email))


def save_visa(app) -> None:
    with app.app_context():
        db.session.add(
            PaymentMethod(
                account_id=account_id(app),
                provider="stripe",
                provider_ref="pm_visa",
                customer_ref="cus_1",
                brand="visa",
                last4="4242",
                exp_month=12,
                exp_year=2030,
                is_default=True,
            )
        )
        db.session.commit()


def switch(client, value: str, htmx: bool = True):
    token = csrf_token(client, "/payment-methods")
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(
        "/payment-methods/auto-renew",
        data={"csrf_token": token, "auto_renew": value},
        headers=headers,
    )


def auto_renew(app) -> bool:
    with app.app_context():
        return db.session.scalar(
            select(Subscription.auto_renew).where(Subscription.account_id == account_id(app))
        )


def text(response) -> str:
    return response.get_data(as_text=True).replace("\xa0", " ")


def test_switching_auto_renewal_off_spells_out_the_suspension(app, standard):
    response = switch(standard, "off")
    assert response.status_code == 200
    assert "HX-Request" in response.headers["Vary"]
    page = text(response)
    assert "<html" not in page
    assert "Twoje konto zostanie zawieszone 16 grudnia 2026" in page
    assert auto_renew(app) is False
    package = text(standard.get("/package"))
    assert "Twoje konto zostanie zawieszone 16 grudnia 2026." in package


def test_switching_on_needs_a_saved_method(app, standard):
    switch(standard, "off")
    response = switch(standard, "on")
    assert response.status_code == 422
    assert "Najpierw dodaj metodę płatności" in text(response)
    assert auto_renew(app) is False


def test_with_a_saved_card_the_renewal_amount_and_method_are_shown(app, standard):
    save_visa(app)
    switch(standard, "off")
    page = text(switch(standard, "on"))
    # 3 agents x 89.00 + 23 % VAT = 328.41, charged on the renewal date
    assert "odnowi się 16 grudnia 2026 za 328,41 zł z VAT" in page
    assert "Visa •••• 4242 (12/2030)" in page
    assert auto_renew(app) is True
    assert "Visa •••• 4242 (12/2030)" in text(standard.get("/package"))


def test_the_switch_works_without_javascript(app, standard):
    response = switch(standard, "off", htmx=False)
    assert response.status_code == 200
    assert "<html" in text(response)
    assert auto_renew(app) is False


@pytest.mark.parametrize("value", ["", "yes", "ON", "1"])
def test_a_forged_value_is_refused(app, standard, value):
    assert switch(standard, value).status_code == 400
    assert auto_renew(app) is True


def test_the_switch_needs_csrf(app, standard):
    response = standard.post("/payment-methods/auto-renew", data={"auto_renew": "off"})
    assert response.status_code == 400
    assert auto_renew(app) is True


def test_free_accounts_have_no_switch(app, client, auth, catalogue):
    with app.app_context():
        demo.load(catalogue, today=TODAY)
    auth.login("free@demo.example.com", demo.PASSWORD)
    page = text(client.get("/payment-methods"))
    assert "Automatyczne odnawianie dotyczy płatnych pakietów." in page
    assert 'name="auto_renew"' not in page
    response = switch(client, "on")
    assert response.status_code == 422


def test_another_accounts_setup_return_is_refused(standard):
    assert standard.get("/payment-methods/setup/stripe/return").status_code == 404
