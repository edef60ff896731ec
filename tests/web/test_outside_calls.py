"""No database transaction stays open across a call to an outside service (security issue,
point 8): while VIES is asked, the portal holds no transaction, so no row or snapshot is
kept waiting on a registry that may take seconds to answer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from pakiet_vies.emulator import ViesEmulator
from portal.infra.extensions import db
from portal.infra.models import BillingInfo
from portal.rules import vat
from tests.web.test_billing import (
    DE_VALID,
    NOW,
    PL_DOWN,
    PL_VALID,
    billing_of,
    checks,
    live,
    login,
    save,
)


@pytest.fixture
def vies() -> Iterator[ViesEmulator]:
    with ViesEmulator() as emulator:
        yield emulator


@pytest.fixture
def config_overrides(vies: ViesEmulator) -> dict[str, Any]:
    return {
        "PLUGIN_CONFIG": {"vies": {"base_url": vies.base_url, "timeout": 1}},
        "VAT_CHECK_RATE_LIMIT": "1000 per minute",
    }


@pytest.fixture
def watched(monkeypatch) -> list[tuple[str, bool]]:
    """(number, a transaction was open) for every question to a validator."""
    seen: list[tuple[str, bool]] = []
    original = vat._ask

    def asking(validator: Any, number: vat.VatNumber, *args: Any) -> Any:
        seen.append((number.full, db.session().in_transaction()))
        return original(validator, number, *args)

    monkeypatch.setattr("portal.rules.vat._ask", asking)
    return seen


def test_saving_billing_data_asks_vies_outside_any_transaction(
    app, client, auth, demo_accounts, vies, watched, monkeypatch
):
    monkeypatch.setattr("portal.web.billing.utcnow", lambda: NOW)
    login(auth, "standard")
    assert save(client, vat_number=PL_VALID).status_code == 303
    assert save(client, vat_number=DE_VALID, country="DE").status_code == 303
    assert watched and all(not open_ for _number, open_ in watched), watched
    billing = billing_of(app, "standard")
    assert (billing.vat_number, billing.vat_status) == (DE_VALID, "valid")
    assert len(checks(app)) == 2  # the proofs were written after the answers


def test_the_live_check_asks_vies_outside_any_transaction(
    app, client, auth, demo_accounts, vies, watched
):
    login(auth, "standard")
    assert live(client, PL_DOWN).status_code == 200
    assert live(client, PL_VALID).status_code == 200
    assert watched and all(not open_ for _number, open_ in watched), watched
    assert {c.status for c in checks(app)} == {"unavailable", "valid"}


def test_the_background_re_check_asks_vies_outside_any_transaction(
    app, client, auth, demo_accounts, vies, watched, monkeypatch
):
    monkeypatch.setattr("portal.web.billing.utcnow", lambda: NOW)
    login(auth, "standard")
    assert save(client, vat_number=PL_DOWN).status_code == 303
    watched.clear()
    later = NOW + dt.timedelta(hours=1)
    with app.app_context():
        report = vat.run_due_checks(now=later, limit=10, settings=vat.settings_for(app))
        assert report.checked == 1
        billing = db.session.get(BillingInfo, billing_of(app, "standard").id)
        assert billing is not None and billing.vat_status == "pending"
        assert billing.vat_next_check_at is not None and billing.vat_next_check_at > later
    assert watched and all(not open_ for _number, open_ in watched), watched


# -- payment providers and rate sources --------------------------------------------------------


class TestProvidersAndRates:
    """Fail on the old code: the provider was asked with the order's row locked, and the
    rate source with the payment's row claimed."""

    @pytest.fixture
    def config_overrides(self, transfer24, smtp, monkeypatch):
        from tests.rules.test_invoicing import config_overrides as invoicing_config

        return invoicing_config.__wrapped__(transfer24, smtp, monkeypatch)

    @pytest.fixture
    def transfer24(self, monkeypatch):
        from tests.rules.test_payments import transfer24 as emulator

        yield from emulator.__wrapped__(monkeypatch)

    @pytest.fixture
    def standard(self, app, client, auth, catalogue, monkeypatch):
        from tests.rules.test_payments import standard as logged_in

        return logged_in.__wrapped__(app, client, auth, catalogue, monkeypatch)

    def _watch(self, app, monkeypatch, name: str) -> list[bool]:
        from portal.plugin_api.registry import registry

        seen: list[bool] = []
        with app.app_context():
            provider = registry(app).payment_providers["transfer24"]
        original = getattr(provider, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            seen.append(db.session().in_transaction())
            return original(*args, **kwargs)

        monkeypatch.setattr(provider, name, watched)
        return seen

    def test_pay_asks_the_provider_outside_any_transaction(self, app, standard, monkeypatch):
        from tests.rules.test_payments import place_and_pay

        seen = self._watch(app, monkeypatch, "start_payment")
        response = place_and_pay(standard, agents="5")
        assert response.status_code in (302, 303), response.get_data(as_text=True)[-3000:]
        assert seen == [False]

    def test_a_provider_that_fails_to_start_leaves_a_failed_attempt(
        self, app, standard, monkeypatch
    ):
        from portal.infra.models import Payment
        from portal.plugin_api.contracts import ProviderError
        from tests.rules.test_payments import place_and_pay

        def down(*args: Any, **kwargs: Any) -> Any:
            assert not db.session().in_transaction()
            raise ProviderError("bank down", retryable=True)

        from portal.plugin_api.registry import registry

        with app.app_context():
            provider = registry(app).payment_providers["transfer24"]
        monkeypatch.setattr(provider, "start_payment", down)
        response = place_and_pay(standard, agents="5")
        assert response.status_code < 500
        with app.app_context():
            payments = db.session.scalars(select(Payment)).all()
            pending = [p for p in payments if p.status == "pending" and p.provider == "transfer24"]
            assert pending == []  # the attempt ended failed: the next Pay starts a new one
        monkeypatch.undo()

    def test_the_invoice_asks_the_rate_source_outside_any_transaction(
        self, app, standard, transfer24, monkeypatch
    ):
        from portal.infra.models import Order, Payment, utcnow
        from portal.rules import invoicing
        from tests.rules.test_invoicing import buy, without_invoice

        buy(standard, transfer24)
        payment_id = without_invoice(app)
        with app.app_context():
            # The same sale in euro: a Polish seller states its VAT in PLN, at a rate.
            payment = db.session.get(Payment, payment_id)
            db.session.execute(
                update(Order).where(Order.id == payment.order_id).values(currency="EUR")
            )
            db.session.execute(
                update(Payment).where(Payment.id == payment_id).values(currency="EUR")
            )
            db.session.commit()
            seen: list[tuple[str, bool]] = []
            real = invoicing.app_rates()

            def rates(base: str, quote: str, on_date: dt.date) -> Any:
                seen.append((base, db.session().in_transaction()))
                return real(base, quote, on_date)

            invoice = invoicing.issue_for_payment(
                payment_id=payment_id,
                seller=app.config["SELLER"],
                language="pl",
                render=invoicing.app_renderer(),
                rates=rates,
                now=utcnow(),
                today=utcnow().date(),
            )
            assert invoice is not None and invoice.currency == "EUR"
            assert seen == [("EUR", False)]
            db.session.remove()

    def test_a_refund_asks_the_provider_outside_any_transaction(
        self, app, standard, transfer24, monkeypatch
    ):
        from tests.rules.test_invoicing import buy
        from tests.rules.test_refunds import ask, the_payment

        buy(standard, transfer24)
        payment = the_payment(app)
        seen = self._watch(app, monkeypatch, "refund")
        response = ask(standard, payment)
        assert response.status_code == 200
        assert seen == [False]
        assert transfer24.transactions[payment.charge_ref]["refunded"] == payment.amount_minor

    def test_the_run_closes_an_expired_checkout_outside_any_transaction(
        self, app, standard, monkeypatch
    ):
        """Fails on the old code: the attempt's rows were locked across the provider's call."""
        from portal.infra.models import Order, Payment
        from portal.plugin_api.registry import registry
        from portal.rules import payments
        from tests.rules.test_payments import place_and_pay

        assert place_and_pay(standard, agents="5").status_code in (302, 303)
        seen = self._watch(app, monkeypatch, "cancel")
        with app.app_context():
            order = db.session.scalar(select(Order).where(Order.status == "pending"))
            later = order.expires_at + dt.timedelta(minutes=1)
            providers = registry(app).payment_providers.get
            assert payments.close_expired(now=later, providers=providers) == 1
            payment = db.session.scalar(select(Payment).where(Payment.order_id == order.id))
            assert (payment.status, payment.failure_code) == ("failed", "expired")
            assert db.session.get(Order, order.id).status == "failed"
        assert seen == [False]

    def test_money_for_an_order_that_no_longer_holds_goes_back_outside_any_transaction(
        self, app, standard, transfer24, monkeypatch
    ):
        """Two tabs: the second payment no longer holds and is refunded after its report's
        transaction is committed (fails on the old code: refunded inside it). A refund the
        provider could not make then is made by the background run, once."""
        from portal.infra.models import Payment
        from portal.plugin_api.contracts import ProviderError
        from portal.rules import payments
        from tests.rules.test_payments import back_from_bank, bank_token, place_and_pay

        first_token = bank_token(place_and_pay(standard, agents="5"))
        second_token = bank_token(place_and_pay(standard, agents="6"))
        back_from_bank(standard, transfer24, first_token)
        from portal.plugin_api.registry import registry

        seen = self._watch(app, monkeypatch, "refund")

        with app.app_context():
            provider = registry(app).payment_providers["transfer24"]
        watched = provider.refund

        def down(*args: Any, **kwargs: Any) -> Any:
            watched(*args, **kwargs)  # records the call, then the answer is lost
            raise ProviderError("timeout", retryable=True)

        monkeypatch.setattr(provider, "refund", down)
        back_from_bank(standard, transfer24, second_token)
        with app.app_context():
            second = db.session.scalars(select(Payment).order_by(Payment.id)).all()[1]
            assert (second.status, second.failure_code) == ("paid", "quote_stale")
        monkeypatch.setattr(provider, "refund", watched)
        with app.app_context():
            assert payments.refund_due() == 1
            assert payments.refund_due() == 0  # once
            second = db.session.get(Payment, second.id)
            assert (second.status, second.refunded_minor) == ("refunded", second.amount_minor)
        assert seen == [False, False]
        assert transfer24.transactions[second.charge_ref]["refunded"] == second.amount_minor
