"""No database transaction stays open across a call to an outside service (security issue,
point 8): while VIES is asked, the portal holds no transaction, so no row or snapshot is
kept waiting on a registry that may take seconds to answer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from pakiet_vies.emulator import ViesEmulator
from portal import demo
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

TODAY = dt.date(2026, 11, 26)


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
def demo_accounts(app, catalogue, monkeypatch):
    monkeypatch.setattr("portal.web.checkout.today", lambda: TODAY)
    with app.app_context():
        demo.load(catalogue, today=TODAY)


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
