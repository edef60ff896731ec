"""Billing contacts in Billing information (issue 25 point 3): up to three more addresses
for the invoice e-mails, validated and deduplicated, with translated errors; a fourth is
refused and nothing is saved; changing only them corrects no invoice."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from portal.infra.extensions import db
from portal.infra.models import BillingChange, Invoice, User
from portal.rules import billing_info
from tests.web.conftest import login, text
from tests.web.test_billing import billing_of, config_overrides, save, vies
from tests.web.test_invoice_list import Books, Customer

__all__ = ["config_overrides", "vies"]  # fixtures reused


def test_contacts_are_saved_cleaned_and_shown(app, client, auth, demo_accounts):
    login(auth, "standard")
    response = save(
        client,
        billing_contacts="Ksiegowosc@Szprycha.pl, szef@szprycha.pl\n"
        "ksiegowosc@szprycha.pl; faktury@szprycha.pl\n\n  biuro@rachunki.example.com ",
    )
    assert response.status_code == 303
    # Lower case, each once, the invoice e-mail itself dropped, in the order typed.
    assert billing_of(app, "standard").billing_contacts == [
        "ksiegowosc@szprycha.pl",
        "szef@szprycha.pl",
        "biuro@rachunki.example.com",
    ]
    page = text(client.get("/billing"))
    shown = re.search(r'<textarea[^>]*name="billing_contacts"[^>]*>(.*?)</textarea>', page, re.S)
    assert shown is not None
    assert shown.group(1).split() == [
        "ksiegowosc@szprycha.pl",
        "szef@szprycha.pl",
        "biuro@rachunki.example.com",
    ]

    assert save(client, billing_contacts="").status_code == 303
    assert billing_of(app, "standard").billing_contacts == []


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("a@x.pl b@x.pl c@x.pl d@x.pl", "Możesz dodać najwyżej 3 adresy."),
        ("a@x.pl, nie-adres", "„nie-adres” nie jest poprawnym adresem e-mail."),
        ("a@x.pl, <script>@x.pl", "„&lt;script&gt;@x.pl” nie jest poprawnym adresem e-mail."),
        ("a@" + "x" * 1000 + ".pl", "Najwyżej 1000 znaków."),
    ],
)
def test_refused_contacts_are_explained_and_change_nothing(
    app, client, auth, demo_accounts, typed, error
):
    login(auth, "standard")  # a Polish customer
    before = billing_of(app, "standard")
    with app.app_context():
        changes = db.session.scalar(select(func.count()).select_from(BillingChange))

    response = save(client, billing_contacts=typed, city="Sopot")

    assert response.status_code == 400
    assert error in text(response)
    after = billing_of(app, "standard")
    assert (after.billing_contacts, after.city) == (before.billing_contacts, before.city)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(BillingChange)) == changes


def test_a_fourth_address_is_refused_in_english_too(app, client, auth, demo_accounts):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        user.language = "en"
        db.session.commit()
    login(auth, "standard")
    response = save(client, billing_contacts="a@x.pl\nb@x.pl\nc@x.pl\nd@x.pl")
    assert response.status_code == 400
    assert "You can add at most 3 addresses." in text(response)


def test_new_contacts_alone_issue_no_correcting_invoice(app, client, auth, demo_accounts):
    login(auth, "standard")
    assert save(client).status_code == 303  # the printed data as the form below has them
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "standard@demo.example.com"))
        books = Books()
        books.invoice(Customer("standard", account_id=user.account_id), dt.date(2026, 11, 20))
        db.session.commit()  # the last invoice, which a correction would be for
        issued = db.session.scalar(select(func.count()).select_from(Invoice))
    response = save(client, billing_contacts="szef@szprycha.pl", apply_to_last_invoice="y")
    assert response.status_code == 303
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Invoice)) == issued
        change = db.session.scalar(select(BillingChange).order_by(BillingChange.id.desc()))
        assert change.after["billing_contacts"] == ["szef@szprycha.pl"]
        assert change.apply_to_last_invoice is False


def test_clean_contacts():
    clean = billing_info.clean_contacts
    assert clean(None) == ()
    assert clean(" A@B.pl ,a@b.pl", "a@b.pl") == ()
    assert clean("x@y.pl\r\nz@y.pl") == ("x@y.pl", "z@y.pl")
    with pytest.raises(billing_info.ContactsRefused) as refused:
        clean("a@b.pl b@c.pl c@d.pl e@f.pl")
    assert refused.value.reason == "too_many"
    with pytest.raises(billing_info.ContactsRefused) as refused:
        clean("a@b.pl @c.pl")
    assert (refused.value.reason, refused.value.address) == ("invalid", "@c.pl")
