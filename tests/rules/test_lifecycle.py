"""The lifecycle (issue 7): the background run renews, retries, notifies and suspends.

Renewals charge saved cards through the Stripe plugin (the real SDK) against its emulator;
notices arrive through a real SMTP server on loopback.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update

from pakiet_stripe.emulator import StripeEmulator
from portal.infra.extensions import db
from portal.infra.models import (
    Invoice,
    Notice,
    Order,
    Payment,
    PaymentMethod,
    ProviderEvent,
    Subscription,
    SubscriptionStatus,
    User,
)
from portal.plugin_api.contracts import PaymentEvent, PaymentEventKind, SavedMethod
from portal.rules import accounts, lifecycle, payments
from portal.rules.catalogue import PackageCode, Period
from portal.rules.periods import add_period
from tests.conftest import PASSWORD, Inbox, decoded_subject, is_postgres, smtp_config

API_KEY = "sk_test_pakiet_lifecycle"
SECRET = "whsec_pakiet_lifecycle"
WARSAW = ZoneInfo("Europe/Warsaw")
GOOD_CARD = "4242424242424242"
NO_FUNDS = "4000000000009995"  # saved fine; every charge declined: insufficient funds


@pytest.fixture
def stripe_emulator() -> Iterator[StripeEmulator]:
    with StripeEmulator(api_key=API_KEY, webhook_secret=SECRET) as emulator:
        yield emulator


def stripe_config(emulator: StripeEmulator) -> dict[str, object]:
    return {
        "api_key": API_KEY,
        "webhook_secret": SECRET,
        "api_base": emulator.base_url,
        "max_network_retries": 0,
        "timeout": 5,
    }


@pytest.fixture
def config_overrides(stripe_emulator, smtp):
    return {
        **smtp_config(smtp),
        "PUBLIC_URL": "https://portal.example.com",
        "ENTITLEMENTS_TOKENS": ["chat-service-token"],
        "PLUGIN_CONFIG": {"stripe": stripe_config(stripe_emulator)},
    }


def at(day: dt.date, hour: int = 0, minute: int = 30) -> dt.datetime:
    """A moment of ``day`` on the portal's wall clock (Warsaw), in UTC."""
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=WARSAW).astimezone(dt.UTC)


def subscribe(
    app,
    emulator: StripeEmulator,
    *,
    email: str = "anna@firma.example.com",
    card: str | None = GOOD_CARD,
    start: dt.date = dt.date(2026, 11, 1),
    period: Period = Period.MONTH,
    agents: int = 3,
    currency: str = "PLN",
    auto_renew: bool = True,
    language: str = "pl",
    credit_minor: int = 0,
) -> int:
    """A paying customer as a first purchase leaves one: the package, a saved card."""
    with app.app_context():
        catalogue = app.extensions["pakiet.catalogue"]
        user = accounts.register_account(
            catalogue=catalogue,
            company="Firma Testowa",
            email=email,
            password=PASSWORD,
            language=language,
            now=at(start),
            confirmed=True,
        )
        assert user.account is not None
        account_id = user.account.id
        billing = user.account.billing_info  # the first purchase asked for them
        billing.street, billing.postcode, billing.city, billing.country = (
            "ul. Długa 5",
            "80-831",
            "Gdańsk",
            "PL",
        )
        package = catalogue.package(PackageCode.STANDARD)
        sub = user.account.subscription
        sub.package = PackageCode.STANDARD.value
        sub.period = period.value
        sub.agents = agents
        sub.conversations = package.included_conversations
        sub.currency = currency
        sub.period_start = start
        sub.period_end = add_period(start, period)
        sub.period_net_minor = (package.agent_price(period, currency) * agents).minor
        sub.credit_minor = credit_minor
        sub.auto_renew = auto_renew
        db.session.commit()
        if card is not None:
            customer, method = emulator.save_card(card, email=email)
            payments.add_method(
                account_id=account_id,
                provider="stripe",
                method=SavedMethod(
                    provider_ref=method, brand="visa", customer_ref=customer, last4=card[-4:]
                ),
                now=at(start),
            )
        return account_id


def run(app, when: dt.datetime) -> lifecycle.Report:
    with app.app_context():
        report = lifecycle.run_now(when)
        db.session.remove()
        return report


def subscription(app, account_id: int) -> Subscription:
    with app.app_context():
        sub = db.session.scalar(select(Subscription).where(Subscription.account_id == account_id))
        assert sub is not None
        db.session.expunge(sub)
        return sub


def rows(app, model, *where):
    with app.app_context():
        found = db.session.scalars(select(model).where(*where).order_by(model.id)).all()
        db.session.expunge_all()
        return found


def succeeded_intents(emulator: StripeEmulator) -> list[dict]:
    return [i for i in emulator.objects("payment_intent") if i["status"] == "succeeded"]


def login(client, email: str = "anna@firma.example.com") -> None:
    from tests.conftest import Auth

    assert Auth(client).login(email).status_code == 302


def page(client, path: str = "/package") -> str:
    response = client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True).replace("\xa0", " ")


# -- renewals ---------------------------------------------------------------------------------


def test_a_due_renewal_charges_the_saved_card_invoices_and_starts_the_next_period(
    app, stripe_emulator, smtp
):
    account_id = subscribe(app, stripe_emulator)
    assert run(app, at(dt.date(2026, 11, 30), 23, 59)).renewed == 0  # not due yet

    report = run(app, at(dt.date(2026, 12, 1)))

    assert report.renewed == 1
    sub = subscription(app, account_id)
    assert (sub.period_start, sub.period_end) == (dt.date(2026, 12, 1), dt.date(2027, 1, 1))
    assert (sub.status, sub.auto_renew, sub.renewal_attempts) == ("active", True, 0)
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    # 3 agents x PLN 89.00 net (Standard, monthly) + 23 % VAT (a Polish seller, no VAT ID)
    assert (payment.status, payment.amount_minor, payment.currency) == ("paid", 32841, "PLN")
    [invoice] = rows(app, Invoice, Invoice.account_id == account_id)
    assert invoice.payment_id == payment.id and invoice.total_minor == 32841
    assert invoice.content["period_start"] == "2026-12-01"
    assert [i["amount"] for i in succeeded_intents(stripe_emulator)] == [32841]
    assert any(s.startswith("Faktura") for s in smtp.subjects())

    # Idempotent: running again (or later the same day) changes nothing.
    again = run(app, at(dt.date(2026, 12, 1), 12))
    assert again.renewed == again.failed == 0
    assert len(rows(app, Payment, Payment.account_id == account_id)) == 1
    assert len(succeeded_intents(stripe_emulator)) == 1


def test_renewals_come_first_then_their_invoices(app, stripe_emulator, smtp, monkeypatch):
    """Rendering a PDF costs more than a renewal: a run charges every due subscription, then
    issues the invoices (its second stage), and reports how long each stage took."""
    first = subscribe(app, stripe_emulator)
    second = subscribe(app, stripe_emulator, email="bartek@firma.example.com")
    from portal.rules import invoicing

    paid_when_issuing: list[int] = []
    issue_now = invoicing.issue_now

    def spy(payment_id: int, *, now: dt.datetime):
        paid_when_issuing.append(
            db.session.scalar(select(func.count()).where(Payment.status == "paid"))
        )
        return issue_now(payment_id, now=now)

    monkeypatch.setattr(invoicing, "issue_now", spy)

    report = run(app, at(dt.date(2026, 12, 1)))

    assert (report.renewed, report.invoices_issued) == (2, 2)
    assert paid_when_issuing == [2, 2]  # both charged before the first invoice
    for account_id in (first, second):
        [invoice] = rows(app, Invoice, Invoice.account_id == account_id)
        assert invoice.total_minor == 32841
    assert len([s for s in smtp.subjects() if s.startswith("Faktura")]) == 2
    assert report.renewal_seconds > 0 and report.invoice_seconds > 0
    assert "subscriptions in " in report.line() and "invoices and e-mail in " in report.line()


def test_a_run_for_the_subscriptions_only_leaves_invoices_and_e_mail_to_the_next(
    app, stripe_emulator, smtp
):
    """``flask billing run --subscriptions-only`` (a node given to renewals, and ``make
    bench --parts renewals``): it renews; the invoice and its e-mail wait for a full run."""
    account_id = subscribe(app, stripe_emulator)
    sent_before = len(smtp.subjects())
    cli = app.test_cli_runner()
    now = at(dt.date(2026, 12, 1)).isoformat()

    result = cli.invoke(args=["billing", "run", "--now", now, "--subscriptions-only"])

    assert result.exit_code == 0, result.output
    assert "1 renewed" in result.output
    assert "invoices and e-mail left for the next run" in result.output
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    assert payment.status == "paid"
    assert rows(app, Invoice, Invoice.account_id == account_id) == []
    assert len(smtp.subjects()) == sent_before

    result = cli.invoke(args=["billing", "run", "--now", now])

    assert result.exit_code == 0, result.output
    assert "0 renewed" in result.output and "1 invoices issued" in result.output
    [invoice] = rows(app, Invoice, Invoice.account_id == account_id)
    assert invoice.payment_id == payment.id
    assert any(s.startswith("Faktura") for s in smtp.subjects()[sent_before:])
    assert len(succeeded_intents(stripe_emulator)) == 1


def renewal_statements(app, monkeypatch, batch: int) -> list[list[str]]:
    """The renewal stage of one run at the period end, ``RENEWAL_BATCH`` = ``batch``: the
    statements of each claim (a batch, or one on its own) and what follows it."""
    per_claim: list[list[str]] = []
    claim = lifecycle._claim

    def counted_claim(now: dt.datetime, after_id: int, wanted: int = 1):
        per_claim.append([])
        return claim(now, after_id, wanted)

    def record(conn, cursor, statement, parameters, context, executemany):
        if per_claim:
            per_claim[-1].append(statement.split()[0])

    monkeypatch.setattr(lifecycle, "_claim", counted_claim)
    monkeypatch.setattr(lifecycle, "_follow_ups", lambda now, deps, report: None)
    monkeypatch.setitem(app.config, "RENEWAL_BATCH", batch)
    with app.app_context():
        engine = db.engine
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        run(app, at(dt.date(2026, 12, 1)))
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    return [statements for statements in per_claim if statements[1:]]  # the last found none


def test_a_renewal_on_its_own_runs_the_same_few_statements_however_many_are_due(
    app, stripe_emulator, monkeypatch
):
    """The renewal stage's cost is its statements (issue 9): claiming a subscription brings
    its account with its billing data, default method and language; the payment's handlers
    take the rows the run holds locked instead of reading them again; the next look is
    written with the renewal; a left-over order and payment are looked up in one statement;
    the charge's record is written once, with its outcome. 9 per renewal, the claim included
    (was 22); one of them updates the card's expiry, which the emulator reports anew.

    16 since the security issue's point 8: no transaction stays open across the charge, so
    the attempt is committed with a lease before it (one UPDATE) and its rows are locked and
    read again after it; 13 since issue 26: they are read again in two statements (the
    subscription, then the payment with its order and the method it was charged with), so
    the method the charge's handler compares with the provider's report is not loaded again
    on its own."""
    for n in range(3):
        subscribe(app, stripe_emulator, email=f"firma{n}@firma.example.com")

    per_renewal = renewal_statements(app, monkeypatch, batch=1)

    counts = [len(statements) for statements in per_renewal]
    assert len(counts) == 3 and counts == [counts[0]] * 3, per_renewal
    assert counts[0] <= 13, " ".join(per_renewal[0])


def test_a_batch_of_renewals_runs_fewer_statements_than_its_renewals_one_by_one(
    app, stripe_emulator, monkeypatch
):
    """Renewals in batches (issue 26): one claim takes several subscriptions; their orders,
    their payments and their leases are each written in one statement (PostgreSQL) and
    committed together; after the charges, the subscriptions and the payments (with their
    orders and methods) are locked and read again in two statements, and the changes of all
    the outcomes are written together at the commit. What still goes one renewal at a time
    is the charge's record; a left-over attempt is looked up for the batch at once."""
    for n in range(7):
        subscribe(app, stripe_emulator, email=f"firma{n}@firma.example.com")

    per_batch = renewal_statements(app, monkeypatch, batch=3)

    assert [len(s) for s in per_batch[:2]] == [len(per_batch[0])] * 2, per_batch  # 3 each
    assert len(per_batch) == 3  # 3, 3 and the last one on its own
    inserts = [s for s in per_batch[0] if s == "INSERT"]
    # The orders, the payments and, per renewal, the charge's record. SQLAlchemy writes
    # several rows in one INSERT where the database returns their ids in order
    # (PostgreSQL); on SQLite they go one by one.
    batched = 2 if is_postgres() else 2 * 3
    assert len(inserts) == batched + 3, " ".join(per_batch[0])
    # Three renewals in a batch cost fewer statements than two on their own.
    alone = per_batch[2]
    assert len(per_batch[0]) < 2 * len(alone), (per_batch[0], alone)
    with app.app_context():
        renewed = db.session.scalars(select(Subscription.period_end)).all()
    assert renewed == [dt.date(2027, 1, 1)] * 7


def test_a_batch_whose_charge_a_webhook_applied_first_applies_each_on_its_own(
    app, stripe_emulator, monkeypatch, caplog
):
    """The webhook of one of a batch's charges is applied before the batch applies its
    outcomes: the batch's transaction gives way (rolled back) and each outcome is applied on
    its own. Each subscription is renewed once, each card charged once, the webhook's
    change kept."""
    from portal.rules import payments

    accounts = [
        subscribe(app, stripe_emulator, email=f"firma{n}@firma.example.com") for n in range(3)
    ]
    charge = lifecycle._charge
    calls: list[str] = []

    def charge_then_webhook(step):
        event = charge(step)
        calls.append(step.key)
        if len(calls) == 2:  # its webhook overtakes the run: applied in its own transaction
            payments.apply_event("stripe", event, now=at(dt.date(2026, 12, 1), 2))
            db.session.commit()
        return event

    monkeypatch.setattr(lifecycle, "_charge", charge_then_webhook)
    caplog.set_level(logging.WARNING, logger=lifecycle.log.name)
    report = run(app, at(dt.date(2026, 12, 1), 2))

    assert (report.renewed, report.errors, report.failed) == (3, 0, 0)
    assert "their outcomes are applied one by one" in caplog.text
    for account_id in accounts:
        assert subscription(app, account_id).period_end == dt.date(2027, 1, 1)
        [payment] = rows(app, Payment, Payment.account_id == account_id)
        assert payment.status == "paid"
    assert len(succeeded_intents(stripe_emulator)) == 3
    assert len(rows(app, ProviderEvent)) == 3  # each charge on record once


def test_a_batch_with_a_subscription_that_fails_gives_way_and_renews_the_others(
    app, stripe_emulator, monkeypatch, caplog
):
    """One subscription of a batch fails before any charge (here its quote): the batch is
    rolled back, each subscription is claimed again on its own, the others are renewed and
    the failing one is looked at again later, nothing counted against it; no charge is made
    twice, nor for the one that failed."""
    accounts = [
        subscribe(app, stripe_emulator, email=f"firma{n}@firma.example.com") for n in range(3)
    ]
    quote = lifecycle._renewal_quote

    def failing_quote(sub, account, deps):
        if account.id == accounts[1]:
            raise RuntimeError("a bug in the quote")
        return quote(sub, account, deps)

    monkeypatch.setattr(lifecycle, "_renewal_quote", failing_quote)
    caplog.set_level(logging.WARNING, logger=lifecycle.log.name)
    report = run(app, at(dt.date(2026, 12, 1), 2))

    assert (report.renewed, report.errors, report.checked) == (2, 1, 3)
    assert "the batch gave way" in caplog.text
    assert [subscription(app, a).period_end for a in accounts] == [
        dt.date(2027, 1, 1),
        dt.date(2026, 12, 1),
        dt.date(2027, 1, 1),
    ]
    assert rows(app, Payment, Payment.account_id == accounts[1]) == []
    assert subscription(app, accounts[1]).next_check_at is not None
    assert len(succeeded_intents(stripe_emulator)) == 2


def test_an_invoice_that_fails_to_render_holds_up_nothing(app, stripe_emulator, smtp, monkeypatch):
    """A rendering that fails (after the number is taken) is logged and counted; the other
    invoices and the e-mail go on, and the run's last pass renders the one left behind."""
    subscribe(app, stripe_emulator)
    subscribe(app, stripe_emulator, email="bartek@firma.example.com")
    from portal.rules import invoicing

    real = invoicing.app_renderer()
    calls: list[str] = []

    def flaky(doc):
        calls.append(doc.number)
        if len(calls) == 1:
            raise RuntimeError("renderer crashed")
        return real(doc)

    monkeypatch.setattr(invoicing, "app_renderer", lambda: flaky)

    report = run(app, at(dt.date(2026, 12, 1)))

    assert (report.renewed, report.errors) == (2, 1)
    invoices = rows(app, Invoice)
    assert len(invoices) == 2 and all(bytes(i.xml) for i in invoices)
    assert calls == [invoices[0].number, invoices[1].number, invoices[0].number]
    assert len([s for s in smtp.subjects() if s.startswith("Faktura")]) == 2


def test_a_renewal_uses_account_credit_and_the_change_staff_scheduled(app, stripe_emulator):
    account_id = subscribe(
        app, stripe_emulator, period=Period.YEAR, start=dt.date(2025, 12, 1), credit_minor=5000
    )
    with app.app_context():  # staff switched yearly -> monthly from the renewal (R7)
        db.session.execute(
            update(Subscription)
            .where(Subscription.account_id == account_id)
            .values(next_period=Period.MONTH.value)
        )
        db.session.commit()

    assert run(app, at(dt.date(2026, 12, 1))).renewed == 1

    sub = subscription(app, account_id)
    assert (sub.period, sub.next_period) == ("month", None)
    assert (sub.period_start, sub.period_end) == (dt.date(2026, 12, 1), dt.date(2027, 1, 1))
    assert sub.credit_minor == 0
    [order] = rows(app, Order, Order.account_id == account_id)
    assert order.quote["account_credit_used_minor"] == 5000
    assert order.net_minor == 26700 - 5000  # 3 x 89.00 less the credit
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    assert payment.amount_minor == order.total_minor == 21700 + 4991


def test_credit_that_covers_the_period_renews_without_a_charge(app, stripe_emulator):
    account_id = subscribe(app, stripe_emulator, credit_minor=50000)
    assert run(app, at(dt.date(2026, 12, 1))).renewed == 1
    sub = subscription(app, account_id)
    assert sub.period_end == dt.date(2027, 1, 1) and sub.credit_minor == 50000 - 26700
    assert rows(app, Payment, Payment.account_id == account_id) == []
    assert stripe_emulator.objects("payment_intent") == []


# -- failed charges ---------------------------------------------------------------------------


def test_a_failed_renewal_is_retried_after_1_3_and_5_days_then_suspends(
    app, client, stripe_emulator, smtp
):
    account_id = subscribe(app, stripe_emulator, card=NO_FUNDS)
    end = dt.date(2026, 12, 1)
    login(client)

    expected_retries = [end + dt.timedelta(days=d) for d in (1, 3, 5)]
    for attempt, day in enumerate([end, *expected_retries], start=1):
        run(app, at(day - dt.timedelta(days=1), 23, 59))  # nothing before the day
        assert len(rows(app, Payment, Payment.account_id == account_id)) == attempt - 1
        report = run(app, at(day))
        assert report.failed == 1
        sub = subscription(app, account_id)
        assert sub.renewal_attempts == attempt
        if attempt <= 3:
            assert sub.status == "past_due"
            assert sub.retry_at == at(expected_retries[attempt - 1], 0, 0)
            banner = page(client)
            assert "Nie udało się pobrać opłaty za odnowienie" in banner
            assert f"{expected_retries[attempt - 1].day}" in banner
        run(app, at(day, 18))  # later the same day: no second attempt
        assert len(rows(app, Payment, Payment.account_id == account_id)) == attempt

    sub = subscription(app, account_id)
    assert (sub.status, sub.suspended_reason, sub.auto_renew) == (
        "suspended",
        "payment_failed",
        False,
    )
    assert len(stripe_emulator.objects("payment_intent")) == 4
    assert succeeded_intents(stripe_emulator) == []
    subjects = smtp.subjects()
    assert subjects.count("Nie udało się odnowić pakietu Pakiet") == 3
    assert subjects.count("Twoje konto Pakiet jest zawieszone") == 1
    failed_mail = next(m for m in smtp.messages if "odnowić" in decoded_subject(m))
    body = failed_mail.get_payload(decode=True).decode()
    assert "https://portal.example.com/payment-methods" in body
    assert "niewystarczające środki" in body
    assert "Twoje konto jest zawieszone" in page(client)


def test_a_new_card_while_past_due_is_tried_at_once(app, stripe_emulator):
    account_id = subscribe(app, stripe_emulator, card=NO_FUNDS)
    run(app, at(dt.date(2026, 12, 1)))
    assert subscription(app, account_id).status == "past_due"

    with app.app_context():
        customer, method = stripe_emulator.save_card(GOOD_CARD)
        payments.add_method(
            account_id=account_id,
            provider="stripe",
            method=SavedMethod(provider_ref=method, brand="visa", customer_ref=customer),
            now=at(dt.date(2026, 12, 1), 10),
        )
    report = run(app, at(dt.date(2026, 12, 1), 10, 31))

    assert report.renewed == 1
    sub = subscription(app, account_id)
    assert (sub.status, sub.period_end, sub.renewal_attempts) == ("active", dt.date(2027, 1, 1), 0)
    assert len(succeeded_intents(stripe_emulator)) == 1


def test_a_renewal_paid_on_a_retry_day_has_its_tax_point_on_the_payment_day(app, stripe_emulator):
    """Issue 23, point 6: declined on 1 December, paid on the retry of 2 December: the
    invoice's sale date is the day the payment came (art. 19a ust. 8), the period as sold."""
    account_id = subscribe(app, stripe_emulator, card=NO_FUNDS)
    run(app, at(dt.date(2026, 12, 1)))
    assert subscription(app, account_id).status == "past_due"
    with app.app_context():
        customer, method = stripe_emulator.save_card(GOOD_CARD)
        payments.add_method(
            account_id=account_id,
            provider="stripe",
            method=SavedMethod(provider_ref=method, brand="visa", customer_ref=customer),
            now=at(dt.date(2026, 12, 2), 10),
        )
    assert run(app, at(dt.date(2026, 12, 2), 10, 31)).renewed == 1
    [invoice] = rows(app, Invoice, Invoice.account_id == account_id)
    assert invoice.sale_date == dt.date(2026, 12, 2)
    assert invoice.content["sale_date"] == "2026-12-02"
    assert invoice.content["period_start"] == "2026-12-01"


@pytest.mark.parametrize("fault", [500, "close", "garbage"])
def test_a_provider_that_is_down_postpones_the_renewal_without_counting_it(
    app, stripe_emulator, fault
):
    account_id = subscribe(app, stripe_emulator)
    stripe_emulator.fail_next(fault)
    report = run(app, at(dt.date(2026, 12, 1)))
    assert (report.postponed, report.renewed, report.failed) == (1, 0, 0)
    sub = subscription(app, account_id)
    assert (sub.status, sub.renewal_attempts, sub.period_end) == ("active", 0, dt.date(2026, 12, 1))
    # The attempt was stored before the call (no transaction stays open across it): it
    # waits, pending, for the next try with the same idempotency key.
    [pending] = rows(app, Payment, Payment.account_id == account_id)
    assert pending.status == "pending"

    assert run(app, at(dt.date(2026, 12, 1), 0, 35)).renewed == 0  # waits 10 minutes
    assert run(app, at(dt.date(2026, 12, 1), 0, 41)).renewed == 1
    assert subscription(app, account_id).period_end == dt.date(2027, 1, 1)
    [paid] = rows(app, Payment, Payment.account_id == account_id)
    assert (paid.id, paid.status) == (pending.id, "paid")
    assert len(succeeded_intents(stripe_emulator)) == 1


def test_a_charge_made_but_its_answer_lost_is_not_charged_again(app, stripe_emulator):
    """The network fails after Stripe charged (as a runner killed after the call): the
    next run asks again with the same idempotency key and gets the same charge."""
    account_id = subscribe(app, stripe_emulator)
    stripe_emulator.fail_next("close", processed=True)
    assert run(app, at(dt.date(2026, 12, 1))).postponed == 1
    assert len(succeeded_intents(stripe_emulator)) == 1  # Stripe did charge

    assert run(app, at(dt.date(2026, 12, 1), 1)).renewed == 1

    assert len(succeeded_intents(stripe_emulator)) == 1
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    assert payment.status == "paid"
    assert payment.charge_ref == succeeded_intents(stripe_emulator)[0]["id"]
    assert len(rows(app, Invoice, Invoice.account_id == account_id)) == 1


def test_an_order_and_payment_a_stopped_runner_left_are_charged_once_and_settled(
    app, stripe_emulator, monkeypatch
):
    """A runner that stored the attempt's order and payment and stopped before the charge
    (say, an older version committing them first): the next run finds both by the attempt's
    key, locks the payment and re-reads both, charges with the same idempotency key and
    settles them — no second order, payment or charge."""
    from pakiet_stripe.client import StripeProvider

    account_id = subscribe(app, stripe_emulator)

    def stop_after_storing(self, request, method):
        db.session.commit()  # the order and payment are stored; then the runner stops
        raise lifecycle.ProviderError("runner stopped", code="stopped", retryable=True)

    with monkeypatch.context() as patch:
        patch.setattr(StripeProvider, "charge_saved", stop_after_storing)
        assert run(app, at(dt.date(2026, 12, 1))).postponed == 1
    [left] = rows(app, Payment, Payment.account_id == account_id)
    assert left.status == "pending" and succeeded_intents(stripe_emulator) == []

    assert run(app, at(dt.date(2026, 12, 1), 1)).renewed == 1

    [payment] = rows(app, Payment, Payment.account_id == account_id)
    assert (payment.id, payment.status) == (left.id, "paid")
    assert [o.status for o in rows(app, Order, Order.account_id == account_id)] == ["paid"]
    assert len(succeeded_intents(stripe_emulator)) == 1
    sub = subscription(app, account_id)
    assert (sub.period_start, sub.period_end) == (dt.date(2026, 12, 1), dt.date(2027, 1, 1))


def test_a_batch_finds_the_attempts_a_stopped_runner_left_in_one_look_up(
    app, stripe_emulator, monkeypatch, caplog
):
    """The same in a batch (issue 26): the attempts left of a batch's subscriptions are
    looked up together, one statement for the batch; the one left is charged once and
    settled, the other renewed as usual."""
    from pakiet_stripe.client import StripeProvider

    left_behind = subscribe(app, stripe_emulator)
    other = subscribe(
        app, stripe_emulator, email="bartek@firma.example.com", start=dt.date(2026, 11, 2)
    )

    def stop_after_storing(self, request, method):
        db.session.commit()
        raise lifecycle.ProviderError("runner stopped", code="stopped", retryable=True)

    with monkeypatch.context() as patch:
        patch.setattr(StripeProvider, "charge_saved", stop_after_storing)
        assert run(app, at(dt.date(2026, 12, 1))).postponed == 1  # only the first was due
    [left] = rows(app, Payment, Payment.account_id == left_behind)
    looked_up: list[int] = []
    look_up = lifecycle._LeftOvers._look_up

    def counted(self):
        looked_up.append(len(self._subs))
        return look_up(self)

    monkeypatch.setattr(lifecycle._LeftOvers, "_look_up", counted)

    assert run(app, at(dt.date(2026, 12, 2), 1)).renewed == 2

    assert looked_up == [2]  # one batch of both, one look-up
    assert "gave way" not in caplog.text  # the batch found it (else: a second order)
    [payment] = rows(app, Payment, Payment.account_id == left_behind)
    assert (payment.id, payment.status) == (left.id, "paid")
    assert [o.status for o in rows(app, Order, Order.account_id == left_behind)] == ["paid"]
    assert [p.status for p in rows(app, Payment, Payment.account_id == other)] == ["paid"]
    assert len(succeeded_intents(stripe_emulator)) == 2


def test_a_renewal_records_its_charge_once_with_its_outcome(app, stripe_emulator):
    """The charge a renewal made is recorded in the renewal's own transaction, written once
    with its outcome and payment (no insert-then-update): a later report of the same event
    is a duplicate."""
    account_id = subscribe(app, stripe_emulator)
    assert run(app, at(dt.date(2026, 12, 1))).renewed == 1
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    [record] = rows(app, ProviderEvent, ProviderEvent.payment_id == payment.id)
    assert record.event_id == f"charge:{payment.provider_ref}:succeeded"
    assert (record.provider, record.type, record.outcome) == ("stripe", "succeeded", "applied")
    replay = PaymentEvent(
        event_id=record.event_id,
        kind=PaymentEventKind.SUCCEEDED,
        payment_id=payment.public_id,
        provider_ref=payment.provider_ref,
        amount=payment.amount,
    )
    with app.app_context():
        assert payments.apply_event("stripe", replay, now=at(dt.date(2026, 12, 2))) == (
            payments.Outcome.DUPLICATE
        )


def on_record(app, outcome: str) -> None:
    """A record of the event id ``named_on_record`` gives the charge, as another route
    (a webhook) would leave it."""
    with app.app_context():
        db.session.add(
            ProviderEvent(
                provider="stripe",
                event_id="charge:pi_on_record:succeeded",
                type="succeeded",
                outcome=outcome,
                received_at=at(dt.date(2026, 11, 30)),
            )
        )
        db.session.commit()


def named_on_record(monkeypatch) -> None:
    import dataclasses

    from pakiet_stripe.client import StripeProvider

    charge = StripeProvider.charge_saved

    def charge_saved(self, request, method):
        event = charge(self, request, method)
        return dataclasses.replace(event, event_id="charge:pi_on_record:succeeded")

    monkeypatch.setattr(StripeProvider, "charge_saved", charge_saved)


def test_a_charge_reported_by_another_route_meanwhile_is_applied_once(
    app, stripe_emulator, monkeypatch
):
    """A report of the renewal's charge under the same id that came by another route while
    the renewal had not committed its payment (so it named no known payment) is taken over
    by the renewal's record: applied once, to the renewal's payment."""
    account_id = subscribe(app, stripe_emulator)
    on_record(app, "unknown_payment")
    with monkeypatch.context() as patch:
        named_on_record(patch)
        assert run(app, at(dt.date(2026, 12, 1))).renewed == 1
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    assert payment.status == "paid"
    [record] = rows(app, ProviderEvent)
    assert (record.event_id, record.outcome, record.payment_id) == (
        "charge:pi_on_record:succeeded",
        "applied",
        payment.id,
    )


def test_a_charge_applied_already_leaves_nothing_and_is_charged_once_later(
    app, stripe_emulator, monkeypatch
):
    """Should a renewal's charge be on record as applied to no payment (here the plugin is
    made to name such a record), the renewal is not counted: its order and payment (stored
    before the charge) wait, pending, the period unchanged, the record as it was — and a
    later run renews with the same idempotency key, so the card is charged once."""
    account_id = subscribe(app, stripe_emulator)
    on_record(app, "applied")
    with monkeypatch.context() as patch:
        named_on_record(patch)
        report = run(app, at(dt.date(2026, 12, 1)))
    assert (report.renewed, report.errors) == (0, 1)
    [pending] = rows(app, Payment, Payment.account_id == account_id)
    assert pending.status == "pending"
    [order] = rows(app, Order, Order.account_id == account_id)
    assert order.status == "pending"
    [record] = rows(app, ProviderEvent)
    assert (record.outcome, record.payment_id) == ("applied", None)
    sub = subscription(app, account_id)
    assert (sub.period_end, sub.status) == (dt.date(2026, 12, 1), "active")
    assert sub.next_check_at is not None

    assert run(app, sub.next_check_at).renewed == 1
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    assert payment.status == "paid"
    assert len(succeeded_intents(stripe_emulator)) == 1


def test_a_card_removed_before_the_renewal_counts_as_a_failed_charge(app, stripe_emulator, smtp):
    account_id = subscribe(app, stripe_emulator, language="en")
    with app.app_context():
        db.session.execute(
            update(PaymentMethod)
            .where(PaymentMethod.account_id == account_id)
            .values(removed_at=at(dt.date(2026, 11, 20)))
        )
        db.session.commit()
    assert run(app, at(dt.date(2026, 12, 1))).failed == 1
    assert subscription(app, account_id).status == "past_due"
    # Nothing left to charge: the renewal's order stays open and the customer is asked to
    # pay it by hand, with any provider (issue 24, point 3).
    message = next(m for m in smtp.messages if "pay the renewal" in decoded_subject(m))
    assert "https://portal.example.com/package/renewal" in message.get_payload(decode=True).decode()


# -- auto-renewal off -------------------------------------------------------------------------


def test_auto_renewal_off_notices_7_and_1_day_before_then_suspends(
    app, client, stripe_emulator, smtp
):
    account_id = subscribe(app, stripe_emulator, auto_renew=False, language="en")
    login(client)
    end = dt.date(2026, 12, 1)

    for day in (end - dt.timedelta(days=8), end - dt.timedelta(days=7)):
        for hour in (0, 12):
            run(app, at(day, hour))
    assert smtp.subjects() == ["Your Pakiet package will be suspended in 7 days"]

    run(app, at(end - dt.timedelta(days=1)))
    run(app, at(end - dt.timedelta(days=1), 20))
    assert smtp.subjects()[1:] == ["Your Pakiet package will be suspended on December 1, 2026"]
    body = smtp.messages[1].get_payload(decode=True).decode()
    assert "https://portal.example.com/payment-methods#auto-renew" in body

    assert run(app, at(end)).suspended == 1
    assert run(app, at(end, 5)).suspended == 0
    sub = subscription(app, account_id)
    assert (sub.status, sub.suspended_reason) == ("suspended", "not_renewed")
    assert sub.package == "standard"  # kept on record for reactivation
    assert smtp.subjects()[2:] == ["Your Pakiet account is suspended"]
    assert stripe_emulator.objects("payment_intent") == []


def test_the_banner_shows_from_7_days_before_a_non_renewing_end(
    app, client, stripe_emulator, monkeypatch
):
    subscribe(app, stripe_emulator, auto_renew=False, language="en")
    login(client)
    end = dt.date(2026, 12, 1)

    def on(day: dt.date, hour: int = 12) -> str:
        monkeypatch.setattr("portal.infra.models.utcnow", lambda: at(day, hour))
        return page(client)

    assert "lifecycle-banner" not in on(end - dt.timedelta(days=8))
    assert "Your package ends in 7 days" in on(end - dt.timedelta(days=7))
    assert "Your package ends in 1 day" in on(end - dt.timedelta(days=1))
    assert "will be suspended on December 1, 2026" in on(end - dt.timedelta(days=1))
    assert "Your package ends today" in on(end, 0)  # before the run suspends it
    run(app, at(end))
    suspended = on(end)
    assert "Your account is suspended" in suspended and "Reactivate" in suspended


def test_a_renewal_notice_gives_the_amount_date_and_the_switch(app, stripe_emulator, smtp):
    subscribe(app, stripe_emulator, language="en")
    run(app, at(dt.date(2026, 11, 23)))  # 8 days before: nothing
    assert smtp.messages == []
    run(app, at(dt.date(2026, 11, 24)))
    run(app, at(dt.date(2026, 11, 25)))
    [message] = smtp.messages
    assert decoded_subject(message) == "Your Pakiet package renews on December 1, 2026"
    body = message.get_payload(decode=True).decode().replace("\xa0", " ")
    assert "PLN 328.41" in body and "January 1, 2027" in body and "Visa •••• 4242" in body
    assert "https://portal.example.com/payment-methods#auto-renew" in body


def test_a_suspended_account_reactivates_by_paying_in_the_checkout(
    app, client, stripe_emulator, monkeypatch
):
    account_id = subscribe(app, stripe_emulator, auto_renew=False)
    run(app, at(dt.date(2026, 12, 1)))
    login(client)
    monkeypatch.setattr("portal.web.checkout.today", lambda: dt.date(2026, 12, 3))
    assert "Reaktywuj" in page(client)
    with app.app_context():  # auto-renewal cannot be switched on while suspended
        with pytest.raises(payments.PaymentRefused, match="auto_renew_suspended"):
            payments.set_auto_renew(account_id=account_id, on=True)
    from tests.plugins.test_stripe_flow import press_pay

    response = press_pay(client)  # the same package again; the saved card is charged
    assert response.status_code == 303
    [order] = rows(app, Order, Order.account_id == account_id)
    assert order.quote["period_start"] == "2026-12-03" and order.quote["unused_days"] == 0
    assert order.total_minor == 32841
    sub = subscription(app, account_id)
    assert (sub.status, sub.period_start, sub.auto_renew) == ("active", dt.date(2026, 12, 3), True)
    assert (sub.suspended_at, sub.suspended_reason) == (None, None)
    assert "lifecycle-banner" not in page(client)


# -- notices survive an SMTP outage -----------------------------------------------------------


def test_a_notice_is_kept_while_smtp_is_down_and_sent_later(app, stripe_emulator, smtp: Inbox):
    subscribe(app, stripe_emulator, auto_renew=False, language="en")
    smtp.stop()
    report = run(app, at(dt.date(2026, 11, 24)))
    assert (report.notices_queued, report.notices_sent, report.notices_failed) == (1, 0, 1)
    [notice] = rows(app, Notice)
    assert notice.sent_at is None and notice.attempts == 1 and notice.last_error

    smtp.start()
    half_a_minute = at(dt.date(2026, 11, 24)) + dt.timedelta(seconds=30)
    assert run(app, half_a_minute).notices_sent == 0  # it backs off a minute
    assert run(app, at(dt.date(2026, 11, 24), 0, 31)).notices_sent == 1
    assert smtp.subjects() == ["Your Pakiet package will be suspended in 7 days"]
    assert run(app, at(dt.date(2026, 11, 25))).notices_sent == 0


# -- time travel: a year of renewals ------------------------------------------------------------


def test_a_monthly_subscription_through_a_year(app, client, stripe_emulator, smtp, monkeypatch):
    account_id = subscribe(app, stripe_emulator, start=dt.date(2026, 12, 1), language="en")
    login(client)
    day = dt.date(2026, 12, 1)
    while day <= dt.date(2027, 12, 10):
        run(app, at(day, 3))
        day += dt.timedelta(days=1)

    invoices = rows(app, Invoice, Invoice.account_id == account_id)
    assert len(invoices) == 12
    assert [i.number for i in invoices] == [f"FV/2027/{n:06d}" for n in range(1, 13)]
    assert [i.sale_date.month for i in invoices] == list(range(1, 13))
    assert len(succeeded_intents(stripe_emulator)) == 12
    sub = subscription(app, account_id)
    assert (sub.period_start, sub.period_end) == (dt.date(2027, 12, 1), dt.date(2028, 1, 1))
    renewal_notices = [s for s in smtp.subjects() if s.startswith("Your Pakiet package renews")]
    assert len(renewal_notices) == 12  # one before each renewal

    with app.app_context():
        payments.set_auto_renew(account_id=account_id, on=False)
    smtp.messages.clear()
    seen: dict[str, dt.date] = {}
    while day <= dt.date(2028, 1, 2):
        run(app, at(day, 3))
        for subject in smtp.subjects():
            seen.setdefault(subject, day)
        monkeypatch.setattr("portal.infra.models.utcnow", lambda d=day: at(d, 12))
        if "lifecycle-banner-ending" in page(client):
            seen.setdefault("banner", day)
        day += dt.timedelta(days=1)

    assert seen == {
        "Your Pakiet package will be suspended in 7 days": dt.date(2027, 12, 25),
        "banner": dt.date(2027, 12, 25),
        "Your Pakiet package will be suspended on January 1, 2028": dt.date(2027, 12, 31),
        "Your Pakiet account is suspended": dt.date(2028, 1, 1),
    }
    assert subscription(app, account_id).status == "suspended"
    assert len(rows(app, Invoice, Invoice.account_id == account_id)) == 12


# -- entitlements -----------------------------------------------------------------------------


def entitlements(client, account_id: int, token: str | None = "chat-service-token", **headers):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(f"/api/v1/accounts/{account_id}/entitlements", headers=headers)


def test_entitlements_need_the_service_token(app, client, stripe_emulator):
    account_id = subscribe(app, stripe_emulator)
    assert entitlements(client, account_id, token=None).status_code == 401
    response = entitlements(client, account_id, token="wrong")
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert entitlements(client, 9999).status_code == 404
    login(client)  # a customer's session is not a service token
    assert entitlements(client, account_id, token=None).status_code == 401


def test_entitlements_follow_every_change(app, client, stripe_emulator):
    account_id = subscribe(app, stripe_emulator, auto_renew=False)
    response = entitlements(client, account_id)
    assert response.status_code == 200
    assert response.json == {
        "account_id": account_id,
        "package": "standard",
        "agents": 3,
        "chatbot_conversations": 100,
        "support": True,
        "status": "active",
        "period_end": "2026-12-01",
        "auto_renew": False,
        "subscription": {
            "package": "standard",
            "period": "month",
            "agents": 3,
            "chatbot_conversations": 100,
        },
        "version": response.json["version"],
    }
    etag = response.headers["ETag"]
    assert entitlements(client, account_id, **{"If-None-Match": etag}).status_code == 304

    run(app, at(dt.date(2026, 12, 1)))  # suspended: the Free package's limits apply

    suspended = entitlements(client, account_id, **{"If-None-Match": etag})
    assert suspended.status_code == 200 and suspended.headers["ETag"] != etag
    body = suspended.json
    assert (body["package"], body["agents"], body["chatbot_conversations"], body["status"]) == (
        "free",
        3,
        0,
        "suspended",
    )
    assert body["subscription"]["package"] == "standard"


def test_entitlements_of_a_free_account(app, client):
    with app.app_context():
        user = accounts.register_account(
            catalogue=app.extensions["pakiet.catalogue"],
            company="Mała Firma",
            email="free@firma.example.com",
            password=PASSWORD,
            language="pl",
            now=at(dt.date(2026, 11, 1)),
        )
        account_id = user.account_id
    body = entitlements(client, account_id).json
    assert (body["package"], body["agents"], body["period_end"], body["support"]) == (
        "free",
        3,
        None,
        False,
    )


# -- pure parts -------------------------------------------------------------------------------


def test_next_check_is_the_next_notice_day_period_end_or_retry():
    settings = lifecycle.Settings()
    sub = Subscription(
        package="standard",
        period="month",
        status=SubscriptionStatus.ACTIVE.value,
        period_end=dt.date(2026, 12, 1),
        auto_renew=False,
    )
    now = at(dt.date(2026, 11, 20), 12)
    assert lifecycle.next_check(sub, now, settings) == at(dt.date(2026, 11, 24), 0, 0)
    now = at(dt.date(2026, 11, 24), 12)
    assert lifecycle.next_check(sub, now, settings) == at(dt.date(2026, 11, 30), 0, 0)
    sub.auto_renew = True
    assert lifecycle.next_check(sub, now, settings) == at(dt.date(2026, 12, 1), 0, 0)
    sub.period = "year"  # a yearly renewal is announced 30 days ahead
    assert lifecycle.next_check(sub, at(dt.date(2026, 10, 1)), settings) == at(
        dt.date(2026, 11, 1), 0, 0
    )
    sub.status, sub.retry_at = "past_due", at(dt.date(2026, 12, 4), 0, 0)
    assert lifecycle.next_check(sub, now, settings) == sub.retry_at


def test_the_run_leaves_customers_orders_valid(app, stripe_emulator):
    """The run's timetable is written without bumping the subscription's version, so an
    order a customer placed meanwhile is still payable."""
    account_id = subscribe(app, stripe_emulator)
    version = subscription(app, account_id).version
    run(app, at(dt.date(2026, 11, 10)))
    run(app, at(dt.date(2026, 11, 24)))  # the renewal notice
    sub = subscription(app, account_id)
    assert sub.version == version and sub.next_check_at == at(dt.date(2026, 12, 1), 0, 0)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Notice)) == 1
    with app.app_context():
        user = db.session.scalar(select(User).where(User.account_id == account_id))
        assert user is not None


def test_a_renewal_the_bank_wants_confirmed_renews_once_the_customer_confirms(
    app, client, stripe_emulator, smtp
):
    account_id = subscribe(app, stripe_emulator, card="4000002760003184", language="en")
    assert run(app, at(dt.date(2026, 12, 1))).failed == 1
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    assert payment.status == "pending" and payment.action_url
    assert subscription(app, account_id).status == "past_due"
    subjects = [s.replace("\xa0", " ") for s in smtp.subjects()]
    assert "Please confirm your payment of PLN 328.41" in subjects
    assert "We could not renew your Pakiet package" in subjects

    login(client)
    outcome = stripe_emulator.authenticate(payment.provider_ref)
    assert outcome.status == "succeeded"
    from tests.plugins.test_stripe_flow import follow

    follow(client, outcome.redirect_url)

    sub = subscription(app, account_id)
    assert (sub.status, sub.period_end, sub.renewal_attempts) == ("active", dt.date(2027, 1, 1), 0)
    [payment] = rows(app, Payment, Payment.account_id == account_id)
    assert payment.status == "paid"
    assert len(rows(app, Invoice, Invoice.account_id == account_id)) == 1
    assert run(app, at(dt.date(2026, 12, 2))).renewed == 0  # no retry: it is renewed
    assert len(succeeded_intents(stripe_emulator)) == 1


@pytest.mark.parametrize(("exp_year", "expires"), [(2026, True), (2027, False)])
def test_the_renewal_notice_says_when_the_card_expires_before_the_renewal(
    app, stripe_emulator, smtp, exp_year, expires
):
    account_id = subscribe(app, stripe_emulator, language="en")  # renews 2026-12-01
    with app.app_context():
        method = payments.default_method(account_id)
        assert method is not None
        method.exp_month, method.exp_year = 11, exp_year  # valid through 30 Nov 2026 or 2027
        db.session.commit()
    run(app, at(dt.date(2026, 11, 24)))
    [message] = [m for m in smtp.messages if "renews on" in decoded_subject(m)]
    body = message.get_payload(decode=True).decode()
    assert ("This payment method expires before that day" in body) is expires
    assert ("https://portal.example.com/payment-methods" in body.splitlines()) is expires
