"""Payment methods page (R8, R10): saved methods and the auto-renewal switch."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from portal import demo
from portal.infra.extensions import db
from portal.infra.models import PaymentMethod, RenewalOff, Subscription, User
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


def save_card(app, ref: str, last4: str, year: int, month: int = 12, default: bool = False) -> int:
    with app.app_context():
        method = PaymentMethod(
            account_id=account_id(app),
            provider="stripe",
            provider_ref=ref,
            customer_ref="cus_1",
            brand="mastercard",
            last4=last4,
            exp_month=month,
            exp_year=year,
            is_default=default,
        )
        db.session.add(method)
        db.session.commit()
        return method.id


def live_methods(app) -> dict[str, bool]:
    """last four -> is default, for the account's methods not removed."""
    with app.app_context():
        rows = db.session.scalars(
            select(PaymentMethod).where(
                PaymentMethod.account_id == account_id(app), PaymentMethod.removed_at.is_(None)
            )
        )
        return {str(m.last4): m.is_default for m in rows}


def remove(client, method_id: int, confirm: bool = False):
    token = csrf_token(client, f"/payment-methods/{method_id}/remove")
    data = {"csrf_token": token}
    if confirm:
        data["auto_renew_off"] = "confirmed"
    return client.post(f"/payment-methods/{method_id}/remove", data=data)


def test_each_method_shows_brand_last_four_and_expiry_and_can_become_the_default(app, standard):
    save_visa(app)
    other = save_card(app, "pm_mc", "5454", 2031, 3)
    page = text(standard.get("/payment-methods"))
    assert "Visa •••• 4242 (12/2030)" in page
    assert "Mastercard •••• 5454 (03/2031)" in page
    token = csrf_token(standard, "/payment-methods")
    response = standard.post(f"/payment-methods/{other}/default", data={"csrf_token": token})
    assert response.status_code == 303
    assert live_methods(app) == {"4242": False, "5454": True}


def test_removing_a_method_asks_first_and_the_newest_other_becomes_the_default(app, standard):
    save_visa(app)
    save_card(app, "pm_mc", "5454", 2031)
    with app.app_context():
        visa = db.session.scalar(select(PaymentMethod.id).where(PaymentMethod.last4 == "4242"))
    confirmation = standard.get(f"/payment-methods/{visa}/remove")
    assert confirmation.status_code == 200
    assert "Visa •••• 4242 (12/2030)" in text(confirmation)
    assert live_methods(app) == {"4242": True, "5454": False}  # asking changes nothing
    assert remove(standard, visa).status_code == 303
    assert live_methods(app) == {"5454": True}
    assert auto_renew(app) is True


def test_removing_the_last_method_with_auto_renewal_on_needs_confirmation(app, standard):
    save_visa(app)
    with app.app_context():
        visa = db.session.scalar(select(PaymentMethod.id).where(PaymentMethod.last4 == "4242"))
    confirmation = text(standard.get(f"/payment-methods/{visa}/remove"))
    assert "16 grudnia 2026" in confirmation
    assert 'name="auto_renew_off"' in confirmation
    refused = remove(standard, visa)
    assert refused.status_code == 422
    assert live_methods(app) == {"4242": True}
    assert auto_renew(app) is True
    assert remove(standard, visa, confirm=True).status_code == 303
    assert live_methods(app) == {}
    assert auto_renew(app) is False


def test_another_accounts_method_cannot_be_removed_or_made_default(app, standard):
    save_visa(app)
    with app.app_context():
        other_account = db.session.scalar(
            select(User.account_id).where(User.email != "standard@demo.example.com")
        )
        method = PaymentMethod(
            account_id=other_account,
            provider="stripe",
            provider_ref="pm_theirs",
            brand="visa",
            last4="1111",
            exp_month=1,
            exp_year=2032,
            is_default=True,
        )
        db.session.add(method)
        db.session.commit()
        theirs = method.id
    assert standard.get(f"/payment-methods/{theirs}/remove").status_code == 404
    token = csrf_token(standard, "/payment-methods")
    assert (
        standard.post(f"/payment-methods/{theirs}/remove", data={"csrf_token": token}).status_code
        == 404
    )
    assert (
        standard.post(f"/payment-methods/{theirs}/default", data={"csrf_token": token}).status_code
        == 404
    )
    with app.app_context():
        assert db.session.get(PaymentMethod, theirs).removed_at is None


def test_removal_needs_csrf(app, standard):
    save_visa(app)
    with app.app_context():
        visa = db.session.scalar(select(PaymentMethod.id).where(PaymentMethod.last4 == "4242"))
    assert standard.post(f"/payment-methods/{visa}/remove").status_code == 400
    assert live_methods(app) == {"4242": True}


def test_a_card_expiring_before_the_renewal_is_flagged_on_my_package(app, standard):
    save_card(app, "pm_old", "5454", 2026, 11, default=True)  # valid through 30 Nov; renews 16 Dec
    package = text(standard.get("/package"))
    assert 'href="/payment-methods"' in package
    assert "Mastercard •••• 5454 (11/2026)" in package
    assert "wygasa przed odnowieniem" in package
    methods = text(standard.get("/payment-methods"))
    assert "wygasa przed kolejnym odnowieniem" in methods


def test_a_card_valid_through_the_renewal_is_not_flagged(app, standard):
    save_card(app, "pm_ok", "5454", 2026, 12, default=True)  # valid through 31 Dec
    assert "wygasa przed odnowieniem" not in text(standard.get("/package"))


@pytest.mark.postgres
def test_removing_a_method_being_charged_answers_409_and_changes_nothing(app, standard):
    save_visa(app)
    save_card(app, "pm_mc", "5454", 2031)
    with app.app_context():
        visa = db.session.scalar(select(PaymentMethod.id).where(PaymentMethod.last4 == "4242"))
        with db.engine.connect() as charging:  # another request charging the card holds its row
            charging.execute(
                sa.text("SELECT id FROM payment_method WHERE id = :id FOR UPDATE"), {"id": visa}
            )
            response = remove(standard, visa)
            charging.rollback()
    assert response.status_code == 409
    assert "jest właśnie obciążana" in text(response)
    assert live_methods(app) == {"4242": True, "5454": False}


@pytest.mark.postgres
def test_removing_a_method_while_a_renewal_holds_the_subscription_answers_409(app, standard):
    save_visa(app)
    with app.app_context():
        visa = db.session.scalar(select(PaymentMethod.id).where(PaymentMethod.last4 == "4242"))
        with db.engine.connect() as renewal:  # the renewal runner holds the subscription
            renewal.execute(
                sa.text("SELECT id FROM subscription WHERE account_id = :a FOR UPDATE"),
                {"a": account_id(app)},
            )
            response = remove(standard, visa, confirm=True)
            renewal.rollback()
    assert response.status_code == 409
    assert live_methods(app) == {"4242": True}
    assert auto_renew(app) is True


def test_auto_renewal_is_switched_off_from_my_package_after_a_confirmation(app, standard):
    save_visa(app)
    package = text(standard.get("/package"))
    assert 'href="/payment-methods/auto-renew/off"' in package
    confirmation = standard.get("/payment-methods/auto-renew/off")
    assert confirmation.status_code == 200
    page = text(confirmation)
    assert "Twoje konto zostanie zawieszone 16 grudnia 2026." in page
    assert "Twoje ustawienia zostaną zachowane" in page
    assert auto_renew(app) is True  # asking changes nothing
    token = csrf_token(standard, "/payment-methods/auto-renew/off")
    standard.post("/payment-methods/auto-renew", data={"csrf_token": token, "auto_renew": "off"})
    assert auto_renew(app) is False
    assert "/payment-methods/auto-renew/off" not in text(standard.get("/package"))
    assert standard.get("/payment-methods/auto-renew/off").status_code == 303


def off_answers(app) -> list[tuple[int, str, str | None]]:
    with app.app_context():
        return [
            (row.account_id, row.reason, row.detail)
            for row in db.session.scalars(select(RenewalOff).order_by(RenewalOff.id))
        ]


def switch_off_with(client, **answer: str):
    token = csrf_token(client, "/payment-methods/auto-renew/off")
    return client.post(
        "/payment-methods/auto-renew/off",
        data={"csrf_token": token, "auto_renew": "off", **answer},
    )


def test_switching_off_from_my_package_asks_why_and_keeps_the_answer_for_staff(app, standard):
    save_visa(app)
    page = text(standard.get("/payment-methods/auto-renew/off"))
    assert "Dlaczego ją wyłączasz? (opcjonalnie)" in page
    assert 'name="reason" value="too_expensive"' in page and 'name="detail"' in page
    response = switch_off_with(standard, reason="too_expensive", detail=" Za drogo\x00 dla nas ")
    assert response.status_code == 303 and response.location.endswith("/package")
    assert auto_renew(app) is False
    assert off_answers(app) == [(account_id(app), "too_expensive", "Za drogo dla nas")]
    package = text(standard.get("/package"))
    assert (
        "Automatyczne odnawianie jest wyłączone. Twoje konto zostanie zawieszone 16 grudnia 2026."
        in package
    )


def test_the_why_is_optional_and_free_text_alone_counts_as_another_reason(app, standard):
    save_visa(app)
    assert switch_off_with(standard).status_code == 303
    assert auto_renew(app) is False
    assert off_answers(app) == []  # no answer, nothing stored
    with app.app_context():
        db.session.execute(sa.update(Subscription).values(auto_renew=True))
        db.session.commit()
    assert switch_off_with(standard, detail="Zamykamy firmę").status_code == 303
    assert off_answers(app) == [(account_id(app), "other", "Zamykamy firmę")]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"reason": "cheaper_elsewhere"}, "Wybierz jeden z podanych powodów albo żaden."),
        ({"reason": "other", "detail": "x" * 501}, "Napisz nam to w najwyżej 500 znakach."),
    ],
    ids=["unknown-reason", "too-long"],
)
def test_a_bad_answer_is_explained_and_changes_nothing(app, standard, answer, message):
    save_visa(app)
    response = switch_off_with(standard, **answer)
    assert response.status_code == 422
    page = text(response)
    assert message in page
    assert "x" * 500 in page or "detail" not in answer  # what was written is kept
    assert auto_renew(app) is True
    assert off_answers(app) == []


def test_switching_off_with_a_reason_needs_the_csrf_token(app, standard):
    save_visa(app)
    response = standard.post(
        "/payment-methods/auto-renew/off", data={"auto_renew": "off", "reason": "temporary"}
    )
    assert response.status_code == 400
    assert auto_renew(app) is True
    assert off_answers(app) == []


def test_the_switch_on_payment_methods_asks_first_and_comes_back_there(app, standard):
    """Payment methods' "Switch auto-renewal off" is a link to the same question My package
    asks (the date, what is kept, why); answering lands back on Payment methods."""
    save_visa(app)
    page = text(standard.get("/payment-methods"))
    assert 'href="/payment-methods/auto-renew/off?back=methods"' in page
    assert 'name="auto_renew" value="off"' not in page  # no switch that skips the question
    asking = text(standard.get("/payment-methods/auto-renew/off?back=methods"))
    assert 'name="back" value="methods"' in asking
    assert 'href="/payment-methods">' in asking  # "Keep auto-renewal on" goes back there
    token = csrf_token(standard, "/payment-methods/auto-renew/off?back=methods")
    response = standard.post(
        "/payment-methods/auto-renew/off",
        data={"csrf_token": token, "back": "methods", "reason": "temporary"},
    )
    assert response.status_code == 303 and response.location.endswith("/payment-methods")
    assert auto_renew(app) is False
    assert off_answers(app)[-1][1] == "temporary"
