"""Many runners at once (issue 7, PostgreSQL): two ``billing run`` processes over 500 due
subscriptions renew, charge and invoice each exactly once; a runner killed with SIGKILL
midway and started again finishes the rest without charging anyone twice."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pakiet_stripe.emulator import StripeEmulator
from portal.infra.extensions import db
from portal.infra.models import (
    Account,
    BillingInfo,
    Invoice,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Subscription,
    User,
)
from portal.rules.catalogue import PackageCode
from tests.conftest import DATABASE_URL
from tests.rules.test_lifecycle import GOOD_CARD, at, stripe_config, stripe_emulator

pytestmark = pytest.mark.postgres
__all__ = ["stripe_emulator"]

ROOT = Path(__file__).resolve().parents[2]
PERIOD_END = dt.date(2026, 12, 1)
RUN_AT = at(PERIOD_END, 2)


@pytest.fixture
def config_overrides(stripe_emulator):
    return {"MAIL_BACKEND": "dummy", "PLUGIN_CONFIG": {"stripe": stripe_config(stripe_emulator)}}


def seed(app, emulator: StripeEmulator, count: int) -> None:
    """``count`` monthly Standard subscriptions in PLN, due on PERIOD_END, each with a card."""
    with app.app_context():
        for n in range(count):
            email = f"runner{n}@firma.example.com"
            account = Account(name=f"Firma {n}")
            account.billing_info = BillingInfo(
                company_name=account.name,
                street="ul. Długa 5",
                city="Gdańsk",
                country="PL",
                invoice_email=email,
            )
            account.subscription = Subscription(
                package=PackageCode.STANDARD.value,
                period="month",
                agents=1 + n % 5,
                conversations=100,
                currency="PLN",
                status="active",
                period_start=dt.date(2026, 11, 1),
                period_end=PERIOD_END,
                auto_renew=True,
                period_net_minor=8900 * (1 + n % 5),
            )
            db.session.add(account)
            db.session.add(User(account=account, email=email, password_hash="-", language="pl"))
            db.session.flush()
            customer, method = emulator.save_card(GOOD_CARD, email=email)
            db.session.add(
                PaymentMethod(
                    account_id=account.id,
                    provider="stripe",
                    provider_ref=method,
                    customer_ref=customer,
                    brand="visa",
                    last4="4242",
                    is_default=True,
                )
            )
        db.session.commit()


def runner(
    emulator: StripeEmulator, tmp_path: Path, now: dt.datetime = RUN_AT
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PAKIET_DATABASE_URL": DATABASE_URL,
        # every node shares it, as in production (a real one: 32 bytes or more)
        "PAKIET_SECRET_KEY": "test-secret-shared-by-every-runner-node",
        "PAKIET_INSTANCE_PATH": str(tmp_path),
        "PAKIET_MAIL_BACKEND": "dummy",
        "PAKIET_PLUGIN_CONFIG": json.dumps({"stripe": stripe_config(emulator)}),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "wsgi",
            "billing",
            "run",
            "--now",
            now.isoformat(),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return out


def renewed_count(out: str) -> int:
    return int(out.split(" checked, ")[1].split(" renewed")[0])


def assert_each_once(app, emulator: StripeEmulator, count: int) -> None:
    with app.app_context():
        ends = db.session.scalars(select(Subscription.period_end)).all()
        assert ends == [dt.date(2027, 1, 1)] * count
        paid = db.session.scalars(select(Payment)).all()
        assert len(paid) == count
        assert {p.status for p in paid} == {PaymentStatus.PAID.value}
        assert len({p.account_id for p in paid}) == count
        numbers = db.session.scalars(select(Invoice.seq).order_by(Invoice.seq)).all()
        assert numbers == list(range(1, count + 1))  # one invoice each, gapless
        assert db.session.scalar(select(func.count(func.distinct(Invoice.payment_id)))) == count
        charge_refs = {p.charge_ref for p in paid}
    succeeded = [i for i in emulator.objects("payment_intent") if i["status"] == "succeeded"]
    assert len(succeeded) == count  # the provider charged each customer once
    assert {i["id"] for i in succeeded} == charge_refs
    assert len({i["customer"] for i in succeeded}) == count


def test_two_runners_at_once_renew_charge_and_invoice_each_subscription_once(
    app, stripe_emulator, tmp_path
):
    seed(app, stripe_emulator, 500)
    first, second = runner(stripe_emulator, tmp_path), runner(stripe_emulator, tmp_path)
    outputs = [finish(first), finish(second)]

    assert_each_once(app, stripe_emulator, 500)
    shares = [renewed_count(out) for out in outputs]
    assert sum(shares) == 500 and min(shares) > 0, outputs  # both did part of the work


def test_a_runner_killed_midway_and_started_again_charges_no_one_twice(
    app, stripe_emulator, tmp_path
):
    seed(app, stripe_emulator, 300)
    process = runner(stripe_emulator, tmp_path)
    deadline = time.monotonic() + 300
    with app.app_context():
        while True:
            # Renewed: a batch's payments are stored before its charges, so they say little.
            done = db.session.scalar(
                select(func.count())
                .select_from(Subscription)
                .where(Subscription.period_end > PERIOD_END)
            )
            db.session.rollback()
            if done >= 30 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    with app.app_context():
        renewed_before = db.session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(Subscription.period_end > PERIOD_END)
        )
    assert 0 < renewed_before < 300  # killed midway

    # Started again once the killed runner's lease on the subscription it was charging has
    # run out (no transaction stays open across a charge, so a lease marks it taken).
    out = finish(runner(stripe_emulator, tmp_path, RUN_AT + dt.timedelta(minutes=6)))

    assert renewed_count(out) == 300 - renewed_before
    assert_each_once(app, stripe_emulator, 300)


def test_a_change_made_while_a_runner_holds_the_subscription_waits_and_applies_after(
    app, stripe_emulator
):
    """The customer switches auto-renewal off while the run is charging the renewal: the
    switch does not wait for the charge (no transaction stays open across it, security
    issue point 8), and the run keeps it when it applies the renewal. One charge."""
    from portal.rules import lifecycle, payments

    seed(app, stripe_emulator, 1)
    with app.app_context():
        account_id = db.session.scalar(select(Account.id))
    stripe_emulator.latency = 1.0
    reports: list[lifecycle.Report] = []

    def background() -> None:
        with app.app_context():
            reports.append(lifecycle.run_now(RUN_AT))

    thread = threading.Thread(target=background)
    thread.start()
    with app.app_context():
        # The runner is in the provider call (1 s), holding no row.
        assert stripe_emulator.call_started.wait(timeout=10)
        sub = payments.set_auto_renew(account_id=account_id, on=False)
        # It did not wait for the charge: the period is the old one still.
        assert (sub.auto_renew, sub.period_end) == (False, PERIOD_END)
    thread.join(timeout=30)

    assert [r.renewed for r in reports] == [1]
    with app.app_context():
        sub = db.session.scalar(select(Subscription))
        assert (sub.auto_renew, sub.status, sub.period_end) == (
            False,
            "active",
            dt.date(2027, 1, 1),
        )
    assert len(stripe_emulator.objects("payment_intent")) == 1


def test_one_runner_keeps_several_charges_in_flight_and_charges_each_once(
    app, stripe_emulator, monkeypatch
):
    """A provider that takes 300 ms to answer (as Stripe does): one run with four threads
    has several charges under way at once (issue 26), and each subscription is still
    renewed, charged and invoiced once."""
    from pakiet_stripe.client import StripeProvider
    from portal.rules import lifecycle

    seed(app, stripe_emulator, 12)
    stripe_emulator.latency = 0.3
    in_flight, most = 0, 0
    lock = threading.Lock()
    charge = StripeProvider.charge_saved

    def counted_charge(self, request, method):
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            return charge(self, request, method)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(StripeProvider, "charge_saved", counted_charge)
    with app.app_context():
        report = lifecycle.run_now(RUN_AT, threads=4)
    assert (report.checked, report.renewed, report.errors) == (12, 12, 0)
    assert most > 1  # several charges were waiting on the provider together
    assert_each_once(app, stripe_emulator, 12)
