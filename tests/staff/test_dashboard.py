"""The dashboard's 12 months and the reasons for switching auto-renewal off (issue 25)."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from portal.infra.extensions import db
from portal.infra.models import Account, RenewalOff, User
from tests.rules.test_lifecycle import at
from tests.rules.test_revenue import monthly, paid
from tests.staff.conftest import TODAY
from tests.staff.test_admin import ADMIN_PAGES, login, text
from tests.staff.test_admin_look import choose


def test_the_dashboard_charts_mrr_per_currency_and_new_and_churned_over_12_months(
    app, client, auth, demo_accounts, monkeypatch
):
    with app.app_context():
        pln, eur = Account(name="PLN monthly"), Account(name="EUR yearly")
        db.session.add_all([pln, eur])
        db.session.flush()
        for start, end in monthly(dt.date(2026, 6, 16), 6):  # 3 agents x PLN 89, from June
            paid(pln, start, end, 26700)
        paid(eur, dt.date(2026, 3, 1), dt.date(2027, 3, 1), 340000, currency="EUR", period="year")
        db.session.commit()
    monkeypatch.setattr("portal.staff.admin.utcnow", lambda: at(TODAY, 12))
    login(auth, "admin")
    choose(client, "en")
    page = text(client.get("/admin/"))
    for currency in ("PLN", "EUR"):
        assert f'<title id="mrr-title-{currency}">MRR in {currency} over the last 12 months' in page
        assert f'aria-labelledby="mrr-title-{currency} mrr-desc-{currency}"' in page
    assert '<title id="flow-title">New and churned subscriptions per month</title>' in page
    table = page.split('id="history-table"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</th>(.*?)</tr>", table, flags=re.S)
    assert [label for label, _ in rows][0] == "Dec 25" and rows[-1][0] == "Nov 26"
    last = re.findall(r"<td>(.*?)</td>", rows[-1][1])
    assert last == ["€283.33", "PLN 267.00", "2", "0", "0"]
    march = re.findall(r"<td>(.*?)</td>", rows[3][1])
    assert march == ["€283.33", "PLN 0.00", "1", "1", "0"]
    june = re.findall(r"<td>(.*?)</td>", rows[6][1])
    assert june == ["€283.33", "PLN 267.00", "2", "1", "0"]
    assert re.findall(r"<td>(.*?)</td>", rows[2][1]) == ["€0.00", "PLN 0.00", "0", "0", "0"]
    choose(client, "pl")
    page = text(client.get("/admin/"))
    assert "MRR w PLN w ostatnich 12 miesiącach" in page and "lis 26" in page


def test_staff_read_why_auto_renewal_was_switched_off(app, client, auth, demo_accounts):
    with app.app_context():
        account_id = db.session.scalar(
            select(User.account_id).where(User.email == "standard@demo.example.com")
        )
        db.session.add_all(
            [
                RenewalOff(
                    account_id=account_id,
                    reason="too_expensive",
                    detail="Budżet <b>obcięty</b>",
                    created_at=dt.datetime(2026, 11, 20, 9, 0, 0, 250000, tzinfo=dt.UTC),
                ),
                RenewalOff(account_id=account_id, reason="other_product", created_at=at(TODAY)),
            ]
        )
        db.session.commit()
        other = db.session.scalar(select(Account.id).where(Account.id != account_id))
    login(auth, "admin")
    choose(client, "en")
    listing = text(client.get("/admin/renewal-off/"))
    assert "Too expensive" in listing and "Switching to another product" in listing
    assert "Budżet &lt;b&gt;obcięty&lt;/b&gt;" in listing  # escaped, never markup
    assert "2026-11-20 10:00:00" in listing  # Warsaw time, to the second
    assert "too_expensive" not in re.sub(r'value="[^"]*"|href="[^"]*"', "", listing)
    account = text(client.get(f"/admin/actions/account/{account_id}"))
    assert "Why auto-renewal was switched off" in account
    assert "Too expensive" in account and "Budżet &lt;b&gt;obcięty&lt;/b&gt;" in account
    assert "Why auto-renewal was switched off" not in text(
        client.get(f"/admin/actions/account/{other}")
    )
    dashboard = text(client.get("/admin/"))
    counts = dashboard.split('id="off-heading"')[1].split("</section>")[0]
    assert "Too expensive: <strong>1</strong>" in counts
    assert "Switching to another product: <strong>1</strong>" in counts
    assert "Missing features: <strong>0</strong>" in counts
    first = re.search(r"/admin/renewal-off/details/\?id=(\d+)", listing)
    assert first is not None
    details = text(client.get(f"/admin/renewal-off/details/?id={first.group(1)}"))
    assert "Switching to another product" in details or "Too expensive" in details
    assert client.get("/admin/renewal-off/?search=%00").status_code in (200, 400)
    choose(client, "pl")
    assert "Za drogo" in text(client.get("/admin/renewal-off/"))


def test_every_admin_page_has_one_title_and_no_raw_view_name(client, auth, demo_accounts):
    login(auth, "admin")
    choose(client, "en")
    for path in ADMIN_PAGES:
        page = text(client.get(path))
        assert len(re.findall(r"<h1[ >]", page)) == 1, path
        assert not re.search(r"<h4[^>]*>\s*actions\s*</h4>", page), path
    assert '<h1 class="h4 mb-4">Subscriptions</h1>' in text(client.get("/admin/subscriptions/"))
