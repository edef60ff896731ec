"""Checkout (issue 3): the edit page, the live summary, server-side rules, placing orders."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from portal.infra.extensions import db
from portal.infra.models import Order, OrderStatus, Subscription, User
from portal.rules import orders
from portal.rules.catalogue import PackageCode, Period
from portal.rules.pricing import Selection
from portal.web import htmx_util
from tests.conftest import billing_form, csrf_token, standard_order
from tests.web.conftest import TODAY, login, text


def form_data(client, **fields) -> dict[str, str]:
    token = csrf_token(client, "/package/edit")
    data = {
        "csrf_token": token,
        "package": "standard",
        "period": "month",
        "agents": "3",
        "conversations": "100",
        "currency": "PLN",
    }
    data.update(fields)
    return data


def summary(client, **fields):
    return client.post(
        "/package/summary", data=form_data(client, **fields), headers={"HX-Request": "true"}
    )


def order_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Order))


def subscription_of(app, who: str) -> Subscription:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == f"{who}@demo.example.com"))
        sub = user.account.subscription
        db.session.expunge_all()
        return sub


def test_my_package_links_to_the_edit_page(client, auth, demo_accounts):
    login(auth, "standard")
    assert 'href="/package/edit"' in text(client.get("/package"))


def test_edit_page_for_a_free_account_offers_currency_and_both_packages(
    client, auth, demo_accounts
):
    login(auth, "free")
    page = text(client.get("/package/edit"))
    assert 'name="period" value="month"' in page and 'name="period" value="year"' in page
    assert "Aktywuj Standard" in page and "Aktywuj Pro" in page
    assert '<select id="currency" name="currency"' in page
    for code in ("PLN", "EUR", "USD", "CZK"):
        assert f'<option value="{code}"' in page
    assert "Pierwszy zakup" in page
    assert "Nie wystawiamy faktur proforma" in page  # R13, where people look for one


def test_currency_is_fixed_after_the_first_purchase(client, auth, demo_accounts):
    login(auth, "standard")
    page = text(client.get("/package/edit"))
    assert '<select id="currency"' not in page
    assert '<input type="hidden" name="currency" value="PLN">' in page
    assert "Bieżący pakiet" in page


def test_summary_shows_the_change_credit_vat_total_and_renewal(client, auth, demo_accounts):
    login(auth, "standard")  # Standard monthly, 3 agents, PLN, period 16 Nov - 16 Dec
    response = summary(client, agents="5")
    page = text(response)
    assert response.status_code == 200
    assert "HX-Request" in response.headers["Vary"]
    assert "<html" not in page
    assert re.search(r"Agenci: 3 → 5\s*<strong>\(\+2\)</strong>", page)
    # 5 x 89.00 = 445.00 for 26 Nov - 26 Dec; 20 of 30 days unused x 267.00 = 178.00
    assert "445,00 zł" in page
    assert "20 niewykorzystanych dni z 30 × 267,00 zł" in page
    assert "−178,00 zł" in page
    assert "VAT 23%" in page and "61,41 zł" in page  # 23 % of 267.00
    assert "Zapłać 328,41 zł" in page
    assert "26 grudnia 2026" in page and "547,35 zł" in page  # renewal: 445 + 23 %


def test_full_page_without_javascript_renders_the_same_summary(client, auth, demo_accounts):
    login(auth, "standard")
    fragment = text(summary(client, agents="5", conversations="300"))
    data = form_data(client, agents="5", conversations="300", action="preview")
    full = text(client.post("/package/edit", data=data))
    section = re.search(r'<section id="summary".*</section>', fragment, re.S).group(0)
    assert section in full
    # The live region outside the swapped section is updated out of band.
    assert (
        '<p id="summary-status" class="visually-hidden" aria-live="polite" hx-swap-oob' in fragment
    )
    assert 'id="summary-status"' in full and "hx-swap-oob" not in full
    assert "2 pakiety po 100" in fragment
    # Summaries are requested by the form and by each number as it is typed: all of them
    # sync on the form, the newest replacing one in flight, so an older answer (a refusal
    # for a half-typed number, say) never lands after a newer one.
    form_tag = re.search(r'<form id="checkout"[^>]*>', full).group(0)
    assert 'hx-sync="this:replace"' in form_tag
    # The live region says the total a screen reader hears, the same as the table's.
    total = re.search(r'data-testid="total-due">([^<]+)<', fragment).group(1)
    for page in (fragment, full):
        said = re.search(r'<p id="summary-status"[^>]*>([^<]*)</p>', page).group(1)
        assert said == f"Do zapłaty teraz: {total}"
    refused = text(summary(client, agents="0"))  # out of range: the reason, not a total
    said = re.search(r'<p id="summary-status"[^>]*>([^<]*)</p>', refused).group(1)
    assert said.startswith("Wybierz od ") and "agentów" in said


def test_summary_in_english_uses_english_formats(client, auth, demo_accounts):
    login(auth, "pro")  # Pro yearly, EUR, English
    page = text(
        summary(
            client, package="pro", period="year", agents="10", conversations="1500", currency="EUR"
        )
    )
    assert "Agents: 8 → 10" in page
    assert "€4,000.00" in page  # 10 agents x 300.00 a year + 10 packs x 100.00
    assert "Pay €" in page


def test_nothing_to_change_disables_pay(client, auth, demo_accounts):
    login(auth, "standard")
    page = text(summary(client))
    assert "nie ma nic do zmiany ani do zapłaty" in page
    assert re.search(
        r'<button type="submit" id="pay-button" name="action" value="pay"\s+disabled', page
    )


def test_yearly_to_monthly_is_refused_with_a_support_link(client, auth, demo_accounts):
    login(auth, "pro")
    response = summary(
        client, package="pro", period="month", agents="8", conversations="1500", currency="EUR"
    )
    page = text(response)
    assert response.status_code == 422
    assert "is not self-service" in page
    assert 'href="mailto:support@pakiet.test"' in page


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"agents": "abc"}, 422, "Podaj liczbę agentów jako liczbę całkowitą"),
        ({"agents": "-1"}, 422, "Podaj liczbę agentów jako liczbę całkowitą"),
        ({"agents": "2.5"}, 422, "Podaj liczbę agentów jako liczbę całkowitą"),
        ({"agents": ""}, 422, "Podaj liczbę agentów jako liczbę całkowitą"),
        ({"agents": "9" * 40}, 422, "Podaj liczbę agentów jako liczbę całkowitą"),
        ({"agents": "0"}, 422, "Wybierz od 1 do 200 agentów."),
        ({"agents": "201"}, 422, "Wybierz od 1 do 200 agentów."),
        ({"conversations": "150"}, 422, "sprzedawane w pakietach po 100"),
        ({"conversations": "0"}, 422, "od 100 do 500 rozmów"),
        ({"conversations": "600"}, 422, "od 100 do 500 rozmów"),
        ({"conversations": "x"}, 422, "Podaj liczbę rozmów"),
        ({"package": "gold"}, 400, "Wybierz pakiet Standard lub Pro."),
        ({"package": "free"}, 400, "Pakietu Free nie można wybrać tutaj"),
        ({"period": "week"}, 400, "Wybierz rozliczenie miesięczne lub roczne."),
        ({"currency": "GBP"}, 400, "Nie prowadzimy sprzedaży w tej walucie."),
        ({"currency": "EUR"}, 422, "Twoje konto jest rozliczane w PLN"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_bad_input_is_a_translated_4xx_and_stores_nothing(
    app, client, auth, demo_accounts, fields, status, message
):
    login(auth, "standard")
    before = subscription_of(app, "standard")
    for path, headers in [("/package/summary", {"HX-Request": "true"}), ("/package/edit", {})]:
        data = form_data(client, action="pay", quote_digest="x", **fields)
        response = client.post(path, data=data, headers=headers)
        assert response.status_code == status, path
        assert message in text(response), path
    assert order_count(app) == 0
    after = subscription_of(app, "standard")
    assert (after.agents, after.version, after.currency) == (before.agents, before.version, "PLN")


def test_missing_fields_fall_back_to_the_current_subscription(client, auth, demo_accounts):
    login(auth, "standard")
    token = csrf_token(client, "/package/edit")
    response = client.post(
        "/package/summary",
        data={"csrf_token": token, "agents": "4"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "Agenci: 3 → 4" in text(response)


def test_summary_without_csrf_is_refused(client, auth, demo_accounts):
    login(auth, "standard")
    response = client.post("/package/summary", data={"agents": "5"})
    assert response.status_code == 400


def pay(client, **fields):
    """Show the summary, then press Pay on it (as the browser would)."""
    page = text(summary(client, **fields))
    digest = re.search(r'name="quote_digest" value="([0-9a-f]*)"', page).group(1)
    key = re.search(
        r'name="idempotency_key" value="([^"]+)"', text(client.get("/package/edit"))
    ).group(1)
    data = form_data(client, action="pay", quote_digest=digest, idempotency_key=key, **fields)
    return client.post("/package/edit", data=data), data


def test_pay_places_the_order_that_was_shown(app, client, auth, demo_accounts):
    login(auth, "standard")
    response, _ = pay(client, agents="5")
    assert response.status_code == 303
    public_id = response.headers["Location"].rsplit("/", 1)[1]
    with app.app_context():
        order = db.session.scalar(select(Order))
        assert order.public_id == public_id
        assert order.status == OrderStatus.PENDING
        assert (order.currency, order.net_minor, order.vat_minor, order.total_minor) == (
            "PLN",
            26700,
            6141,
            32841,
        )
        assert order.quote["unused_days"] == 20 and order.quote["agents"] == 5
    page = text(client.get(response.headers["Location"]))
    assert "Oczekuje na płatność" in page and "328,41 zł" in page


def test_double_submit_places_one_order(app, client, auth, demo_accounts):
    login(auth, "standard")
    first, data = pay(client, agents="5")
    second = client.post("/package/edit", data=data)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert order_count(app) == 1


def test_a_changed_price_shows_the_new_summary_instead_of_charging(
    app, client, auth, demo_accounts
):
    login(auth, "standard")
    page = text(summary(client, agents="5"))
    digest = re.search(r'name="quote_digest" value="([0-9a-f]*)"', page).group(1)
    quoted = re.search(r'name="quoted_selection" value="([^"]*)"', page).group(1)
    assert quoted == "standard/month/5/100/PLN"
    with app.app_context():  # meanwhile staff change the subscription (new version)
        sub = db.session.scalar(select(Subscription).where(Subscription.currency == "PLN"))
        sub.agents = 4
        db.session.commit()
    data = form_data(
        client,
        action="pay",
        quote_digest=digest,
        quoted_selection=quoted,
        idempotency_key="k" * 20,
        agents="5",
    )
    response = client.post("/package/edit", data=data)
    assert response.status_code == 409
    assert "Sprawdź nowe podsumowanie" in text(response)
    assert "Agenci: 4 → 5" in text(response)
    assert order_count(app) == 0


def test_order_page_supersedes_an_order_whose_price_no_longer_holds(
    app, client, auth, demo_accounts
):
    login(auth, "standard")
    response, _ = pay(client, agents="5")
    location = response.headers["Location"]
    with app.app_context():
        db.session.execute(
            sa.update(Order).values(
                expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
                created_at=dt.datetime(1999, 1, 1, tzinfo=dt.UTC),
            )
        )
        db.session.commit()
    page = text(client.get(location))
    assert "nie zostanie pobrana" in page
    with app.app_context():
        assert db.session.scalar(select(Order.status)) == OrderStatus.SUPERSEDED


def test_another_accounts_order_is_not_found(client, auth, demo_accounts):
    login(auth, "standard")
    response, _ = pay(client, agents="5")
    location = response.headers["Location"]
    auth.logout()
    login(auth, "free")
    assert client.get(location).status_code == 404
    assert client.get("/package/orders/" + "0" * 32).status_code == 404


def count_statements(app, client, fields) -> int:
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    data = form_data(client, **fields)
    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.post("/package/summary", data=data, headers={"HX-Request": "true"})
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200
    return len(statements)


def test_summary_sql_is_constant_in_the_accounts_history(app, client, auth, demo_accounts):
    login(auth, "standard")
    small = count_statements(app, client, {"agents": "5"})
    with app.app_context():
        sub = db.session.scalar(select(Subscription).where(Subscription.currency == "PLN"))
        for i in range(40):
            db.session.add(
                standard_order(
                    public_id=f"{i:032d}",
                    account_id=sub.account_id,
                    idempotency_key=f"key-{i:020d}",
                    agents=3,
                    subtotal_minor=0,
                    net_minor=0,
                    vat_minor=0,
                    total_minor=0,
                    created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                    expires_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
                )
            )
        db.session.commit()
    large = count_statements(app, client, {"agents": "5"})
    assert small == large <= 2  # the user, then the account with its subscription


def test_digest_depends_on_the_subscription_version(app, catalogue, demo_accounts):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        account = user.account
        pricing = orders.Pricing(catalogue, app.extensions["pakiet.vat_rates"], "PL")
        sel = Selection(PackageCode.STANDARD, Period.MONTH, 5, 100, "PLN")
        result, _ = orders.quote_for(pricing, account, sel, TODAY)
        assert orders.digest(result, 1) != orders.digest(result, 2)


def shown(page: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', page).group(1)


def test_pay_pressed_before_the_summary_caught_up_shows_the_new_price_calmly(
    app, client, auth, demo_accounts
):
    """The customer types 6 and presses Pay at once: the summary still showed 5. Only their
    own input changed, so they are not told that the price or their package changed."""
    login(auth, "standard")
    page = text(summary(client, agents="5"))
    data = form_data(
        client,
        action="pay",
        agents="6",
        quote_digest=shown(page, "quote_digest"),
        quoted_selection=shown(page, "quoted_selection"),
        idempotency_key="k" * 20,
    )
    response = client.post("/package/edit", data=data)
    body = text(response)
    assert response.status_code == 200
    assert "Podsumowanie pokazuje teraz cenę tego, co wpisano" in body
    assert "zmieniła się cena" not in body
    assert "Agenci: 3 → 6" in body
    assert order_count(app) == 0


@pytest.mark.parametrize(
    ("who", "package", "entered", "fitted", "message"),
    [
        ("standard", "pro", "100", "500", "było 100, jest 500 miesięcznie"),
        ("pro", "standard", "1500", "500", "changed from 1500 to 500 per month"),
    ],
)
def test_switching_standard_and_pro_brings_conversations_into_range(
    app, client, auth, demo_accounts, who, package, entered, fitted, message
):
    login(auth, who)
    period = "year" if who == "pro" else "month"
    currency = "EUR" if who == "pro" else "PLN"
    fields = dict(
        package=package,
        period=period,
        currency=currency,
        conversations=entered,
        conversations_for="pro" if package == "standard" else "standard",
    )
    response = summary(client, **fields)
    page = text(response)
    assert response.status_code == 200, page
    assert message in page
    # The field is swapped in with the new number, and the package it now belongs to.
    assert re.search(
        rf'<div id="conversations-field" hx-swap-oob="true">.*value="{fitted}"', page, re.S
    )
    assert re.search(rf'id="conversations-for" name="conversations_for" value="{package}"', page)
    assert shown(page, "quoted_selection").endswith(f"/{fitted}/{currency}")
    # Typed for the same package, an out-of-range number is refused, not changed.
    fields["conversations_for"] = package
    fields["conversations"] = "50"
    refused = summary(client, **fields)
    assert refused.status_code == 422 and "Zmieniliśmy" not in text(refused)
    assert "changed from" not in text(refused)


def test_choosing_another_currency_swaps_the_package_cards_prices_too(client, auth, demo_accounts):
    login(auth, "free")
    page = text(client.get("/package/edit"))
    assert re.search(r'id="prices-in" name="prices_in" value="PLN"', page)
    response = summary(client, currency="EUR", prices_in="PLN")
    swapped = text(response)
    assert response.status_code == 200, swapped
    assert re.search(r'id="prices-in" name="prices_in" value="EUR" hx-swap-oob="true"', swapped)
    for code in ("standard", "pro"):
        card = re.search(
            rf'<div id="prices-{code}"[^>]*hx-swap-oob="true">(.*?)</div>', swapped, re.S
        )
        assert card and "€" in card.group(1) and "PLN" not in card.group(1), code
    # The same currency as the cards show: the summary alone, as cheap as before.
    same = text(summary(client, currency="EUR", prices_in="EUR"))
    assert 'id="prices-standard"' not in same


def test_back_after_placing_an_order_with_another_choice_places_a_new_order(
    app, client, auth, demo_accounts
):
    """Back to the edit page (same idempotency key), another number, Pay: that is a new
    order for the new choice, never the old order; a double click on it places one."""
    login(auth, "standard")
    first, data = pay(client, agents="5")
    page = text(summary(client, agents="7"))
    data.update(
        agents="7",
        quote_digest=shown(page, "quote_digest"),
        quoted_selection=shown(page, "quoted_selection"),
    )
    second = client.post("/package/edit", data=data)
    again = client.post("/package/edit", data=data)
    assert first.status_code == second.status_code == again.status_code == 303
    assert second.headers["Location"] == again.headers["Location"] != first.headers["Location"]
    with app.app_context():
        agents = sorted(o.agents for o in db.session.scalars(select(Order)))
    assert agents == [5, 7]


def test_the_polish_summary_calls_the_credit_a_credit(client, auth, demo_accounts):
    login(auth, "standard")
    page = text(summary(client, agents="5"))
    assert "Zaliczenie niewykorzystanej części okresu" in page
    assert "Zniżka" not in page and "rabat" not in page.lower()


def test_the_summary_writes_the_period_to_its_last_day(client, auth, demo_accounts):
    login(auth, "standard")
    page = text(summary(client, agents="5"))
    # Bought on 26 November: the monthly period is 26 Nov - 25 Dec; the renewal 26 Dec.
    assert "Cena za nowy okres, 26 listopada 2026 – 25 grudnia 2026" in page
    assert "Następne odnowienie 26 grudnia 2026" in page


def test_without_a_billing_country_and_address_the_checkout_asks_for_them_before_pay(
    app, client, auth, demo_accounts
):
    """Issue 23, point 5: a new customer has only a company name and an e-mail. No price
    with a VAT guessed from the seller's country: the summary asks for the billing data,
    links to the form, and Pay is disabled and refused on the server."""
    assert auth.signup("nowy@firma.example.com", "Nowa Firma").status_code == 302
    response = summary(client, agents="2")
    page = text(response)
    assert response.status_code == 422
    assert "Zanim zapłacisz, podaj kraj i adres do faktury" in page
    assert '<a href="/billing">Uzupełnij dane do faktury</a>' in page
    assert '<button type="submit" id="pay-button" name="action" value="pay" disabled' in page
    assert "23%" not in page and "23 %" not in page
    key = re.search(
        r'name="idempotency_key" value="([^"]+)"', text(client.get("/package/edit"))
    ).group(1)
    forged = form_data(client, action="pay", agents="2", quote_digest="0" * 64, idempotency_key=key)
    refused = client.post("/package/edit", data=forged)
    assert refused.status_code == 422
    assert "Zanim zapłacisz, podaj kraj i adres do faktury" in text(refused)
    assert order_count(app) == 0

    data = billing_form(
        client,
        country="CZ",
        city="Praha",
        company_name="Nowa Firma s.r.o.",
        street="Václavské náměstí 1",
        postcode="110 00",
        invoice_email="nowy@firma.example.com",
    )
    assert client.post("/billing", data=data).status_code == 303
    priced = text(summary(client, agents="2"))
    assert "Zanim zapłacisz" not in priced
    assert "21%" in priced or "21 %" in priced  # a Czech consumer: Czech VAT, not Polish
    response, _ = pay(client, agents="2")
    assert response.status_code == 303 and order_count(app) == 1


@pytest.mark.parametrize(
    "who, fields",
    [
        ("standard", {"agents": "5", "conversations": "300"}),  # a change, with its table
        ("standard", {}),  # the current package: nothing to pay
        ("standard", {"agents": "0"}),  # refused: the reason, 422
        ("free", {"package": "pro", "currency": "EUR"}),  # a first purchase
        ("pro", {"package": "pro", "period": "year", "agents": "4", "currency": "EUR"}),
    ],
)
def test_a_live_summary_answered_without_the_template_is_the_templates(
    client, auth, demo_accounts, monkeypatch, who, fields
):
    """checkout.show answers most live summaries from the printers alone; the template it
    skips would have given the same page."""
    from portal.web import checkout

    login(auth, who)
    data = form_data(client, **fields)
    printed = []
    alone = checkout._live_summary
    monkeypatch.setattr(checkout, "_live_summary", lambda *a: printed.append(1) or alone(*a))
    fast = client.post("/package/summary", data=data, headers={"HX-Request": "true"})
    assert printed, "answered by the template: nothing compared"
    monkeypatch.setattr(
        checkout,
        "_live_summary",
        lambda ctx, status: htmx_util.render("", "checkout/_summary.html", status, **ctx),
    )
    rendered = client.post("/package/summary", data=data, headers={"HX-Request": "true"})
    assert fast.status_code == rendered.status_code
    assert fast.headers["Vary"] == rendered.headers["Vary"]
    assert fast.mimetype == rendered.mimetype == "text/html"
    words = [" ".join(text(r).split()) for r in (fast, rendered)]
    assert words[0] == words[1]
    assert 'id="summary-status"' in words[0] and 'id="pay-button"' in words[0]
