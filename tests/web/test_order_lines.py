"""The order summary's table and changes, printed in Python (portal/web/order_lines.py):
every branch a quote can take, in both languages with Polish plurals, as well-formed HTML
with its values escaped."""

from __future__ import annotations

from typing import Any

import pytest

from portal.web import order_lines
from tests.web.conftest import read


def record(**overrides: Any) -> dict[str, Any]:
    """A Standard package for 3 agents and two extra conversation packs, mid-period."""
    base: dict[str, Any] = {
        "currency": "PLN",
        "package": "standard",
        "period": "month",
        "period_start": "2026-11-26",
        "period_end": "2026-12-26",
        "included_conversations": 100,
        "conversation_pack": 50,
        "lines": [
            {"kind": "package", "quantity": 3, "unit_price_minor": 4900, "amount_minor": 14700},
            {
                "kind": "conversations",
                "quantity": 2,
                "unit_price_minor": 1000,
                "amount_minor": 2000,
            },
        ],
        "subtotal_minor": 16700,
        "unused_days": 5,
        "period_days": 30,
        "credit_base_minor": 9800,
        "unused_credit_minor": 1633,
        "account_credit_used_minor": 500,
        "net_due_minor": 14567,
        "vat_rate": "0.23",
        "vat_minor": 3350,
        "total_due_minor": 17917,
        "credit_after_minor": 0,
        "renewal_date": "2026-12-26",
        "renewal_net_minor": 16700,
        "renewal_total_minor": 20541,
        "changes": [
            {"field": "agents", "before": 1, "after": 3, "delta": 2},
            {"field": "package", "before": "free", "after": "standard"},
            {"field": "period", "before": "year", "after": "month"},
            {"field": "conversations", "before": 100, "after": 200, "delta": 100},
        ],
        "is_first_purchase": False,
    }
    return {**base, **overrides}


@pytest.fixture
def in_language(app):
    def enter(language: str):
        return app.test_request_context(headers={"Accept-Language": language})

    return enter


def test_every_line_of_a_change_in_polish(in_language):
    with in_language("pl"):
        table = read(order_lines.summary_table(record(), "domestic"))
        changes = read(order_lines.change_list(record()))
    assert "Pakiet Standard, miesięcznie" in table
    assert "3 agentów" in table and "49,00 zł" in table and "147,00 zł" in table
    assert "2 pakiety po 50" in table  # Polish plural of 2
    assert "5 niewykorzystanych dni z 30 × 98,00 zł" in table  # and of 5
    assert "−16,33 zł" in table and "−5,00 zł" in table  # unused time, account credit
    assert "VAT 23%" in table and "179,17 zł" in table
    assert "26 grudnia 2026" in table  # the renewal, a Polish long date
    assert changes == (
        "Agenci: 1 → 3 (+2) Pakiet: Free → Standard "
        "Okres rozliczeniowy: Roczny → Miesięczny "
        "Rozmowy z czatbotem miesięcznie: 100 → 200 (+100)"
    )


def test_the_tax_treatments_and_credits_in_english(in_language):
    quiet = record(unused_credit_minor=0, account_credit_used_minor=0)
    with in_language("en"):
        reverse = read(order_lines.summary_table(quiet, "reverse_charge"))
        consumer = read(order_lines.summary_table(quiet, "eu_consumer", "CZ"))
        outside = read(order_lines.summary_table(quiet, "outside_eu"))
        credit = read(
            order_lines.summary_table(
                record(credit_after_minor=1200, renewal_net_minor=15700), "domestic"
            )
        )
        first = read(order_lines.change_list(record(is_first_purchase=True)))
        none = order_lines.change_list(record(changes=[]))
    assert "1 pack of 50" not in reverse and "2 packs of 50" in reverse
    assert "VAT 23%: reverse charge The buyer accounts for the VAT" in reverse
    assert "VAT 23% (Czechia)" in consumer
    assert "VAT: not charged (buyer outside the EU)" in outside
    assert "Credit for unused time" not in reverse and "Account credit used" not in reverse
    assert "5 unused days of 30 × PLN 98.00 paid for the current period" in credit
    assert "Account credit after this change: PLN 12.00" in credit
    assert "after PLN 10.00 of account credit" in credit  # 167.00 - 157.00
    assert first == "First purchase: the package starts as soon as the payment is confirmed."
    assert none == ""


def test_a_value_is_escaped_and_a_translation_is_markup(in_language, monkeypatch):
    """Amounts and names come from Babel and the catalogue, not from customers; were one to
    carry markup, it would be shown as text."""
    monkeypatch.setitem(order_lines.PACKAGE_NAMES, "standard", "<b>Std</b> & co")
    with in_language("en"):
        html = str(order_lines.summary_table(record(), "domestic"))
        changes = str(order_lines.change_list(record()))
    assert "&lt;b&gt;Std&lt;/b&gt; &amp; co package, monthly" in html
    assert "<b>" not in html and "<b>" not in changes
    assert "Free → &lt;b&gt;Std&lt;/b&gt; &amp; co" in changes
