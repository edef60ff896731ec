"""My package (R1): every fact from the database, in both languages, only one's own."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from portal import demo
from portal.infra.extensions import db
from portal.infra.models import Order, Payment, PaymentMethod, User, utcnow
from portal.rules import overview


@pytest.fixture
def demo_accounts(app, catalogue):
    with app.app_context():
        demo.load(catalogue, today=dt.date(2026, 11, 26))


def login_demo(auth, who: str):
    response = auth.login(f"{who}@demo.example.com", demo.PASSWORD)
    assert response.status_code == 302


def text(response) -> str:
    return response.get_data(as_text=True).replace("\xa0", " ")


def add_pending_payment(user: User) -> None:
    """A checkout payment of ``user``'s account, started now and not confirmed yet."""
    now = utcnow()
    order = Order(
        public_id="o" * 32,
        account_id=user.account_id,
        idempotency_key="k" * 32,
        subscription_version=user.account.subscription.version,
        package="standard",
        period="month",
        agents=5,
        conversations=100,
        currency="PLN",
        subtotal_minor=44500,
        net_minor=26700,
        vat_minor=6141,
        total_minor=32841,
        tax_treatment="domestic",
        quote={},
        created_at=now,
        expires_at=now + dt.timedelta(minutes=30),
    )
    db.session.add(order)
    db.session.flush()
    db.session.add(
        Payment(
            public_id="p" * 32,
            account_id=user.account_id,
            order_id=order.id,
            provider="stripe",
            idempotency_key="k" * 32,
            amount_minor=32841,
            currency="PLN",
            created_at=now,
        )
    )


def test_login_required(client):
    response = client.get("/package")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_standard_monthly_pln_in_polish(client, auth, demo_accounts):
    login_demo(auth, "standard")
    page = text(client.get("/package", headers={"Accept-Language": "pl"}))
    for expected in [
        "Mój pakiet",
        "Standard",
        "Aktywny",
        "Miesięczny",
        "3 agentów",
        "100 rozmów miesięcznie",
        "PLN — złoty polski",
        "Odnowienie",
        "6 grudnia 2026",
        "Automatyczne odnawianie",
        "Włączone",
    ]:
        assert expected in page, expected


def test_pro_yearly_eur_in_english(client, auth, demo_accounts):
    login_demo(auth, "pro")  # the Pro demo user prefers English
    page = text(client.get("/package"))
    for expected in [
        "My package",
        "Pro",
        "Yearly",
        "8 agents",
        "1500 conversations per month",
        "500 included in the package",
        "EUR — euro",
        "Renews on",
        "August 18, 2027",
    ]:
        assert expected in page, expected


def test_free_account_facts(client, auth, demo_accounts):
    login_demo(auth, "free")
    page = text(client.get("/package"))
    assert "do 3 agentów" in page
    assert "Pakiet Free nie wygasa" in page
    assert "Obsługa klienta jest dostępna tylko w płatnych pakietach." in page


def test_account_credit_and_pending_state(app, client, auth, demo_accounts):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        user.account.subscription.credit_minor = 123456
        add_pending_payment(user)
        db.session.commit()
    login_demo(auth, "standard")
    page = text(client.get("/package"))
    assert "Saldo na koncie" in page
    assert "1 234,56 zł" in page
    assert "Płatność w toku" in page
    assert 'hx-trigger="every 2s"' in page  # the page polls until the provider confirms


def test_the_facts_that_ride_with_the_user_are_the_users_own(app, auth, demo_accounts):
    """My package's facts (the latest attempt, the default method) come in the user's own
    statement, bound to the user's account: the standard account's pending payment and
    card are on its page, not on the pro account's."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        add_pending_payment(user)
        db.session.add(
            PaymentMethod(
                account_id=user.account_id,
                provider="stripe",
                provider_ref="pm_own_1881",
                customer_ref="cus_own_1881",
                brand="visa",
                last4="1881",
                exp_month=12,
                exp_year=2034,
                is_default=True,
                created_at=utcnow(),
            )
        )
        db.session.commit()
        # Read on its own (a view without the user's row to ride on): the same facts.
        facts = overview.package_facts(user.account, utcnow(), utcnow())
        assert facts.method is not None and facts.method.last4 == "1881"
        assert facts.attempt is not None and facts.attempt.pending
    for who, own in (("standard", True), ("pro", False)):
        client = app.test_client()
        assert type(auth)(client).login(f"{who}@demo.example.com", demo.PASSWORD).status_code == 302
        page = text(client.get("/package"))
        assert ("Payment pending" in page or "Płatność w toku" in page) is own, who
        assert ("1881" in page) is own, who  # the standard account's default card


def test_htmx_request_gets_the_fragment_with_vary(client, auth, demo_accounts):
    login_demo(auth, "standard")
    full = client.get("/package")
    partial = client.get("/package", headers={"HX-Request": "true"})
    assert "HX-Request" in full.headers["Vary"] and "HX-Request" in partial.headers["Vary"]
    assert "<html" not in partial.get_data(as_text=True)
    assert partial.get_data(as_text=True).strip() in full.get_data(as_text=True)


def test_each_customer_sees_only_their_own_account(client, auth, demo_accounts):
    login_demo(auth, "free")
    for path in ["/package", "/package?account_id=2", "/package?account=2"]:
        page = text(client.get(path))
        assert "Kwiaciarnia Bratek" in page
        assert "Sklep Rowerowy Szprycha" not in page
        assert "Miesięczny" not in page


def test_admin_without_account_gets_404_on_customer_pages(client, auth, demo_accounts):
    login_demo(auth, "admin")
    assert client.get("/package").status_code == 404


def test_my_package_reads_the_account_without_its_billing_data(
    client, auth, demo_accounts, monkeypatch
):
    """My package's one statement leaves the billing data's columns out (the page shows
    none of them); a view that read them anyway would fail loudly, not see "no billing
    data" (portal/web/session_user.py)."""
    from sqlalchemy.orm.exc import DetachedInstanceError

    from portal.web import account as account_view

    seen = []
    render = account_view._package_context

    def spy(account, facts_row=None):
        seen.append(account.name)
        with pytest.raises(DetachedInstanceError):
            _ = account.billing_info
        return render(account, facts_row)

    monkeypatch.setattr(account_view, "_package_context", spy)
    login_demo(auth, "standard")
    assert client.get("/package").status_code == 200
    assert seen == ["Sklep Rowerowy Szprycha"]
