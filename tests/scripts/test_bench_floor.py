"""The benchmark's floor app (``scripts/bench_floor.py``, issue 9) does what its rows claim.

``make bench`` reads the portal's page ratios against this app's: a floor that skipped its
log-in check, answered another body or let one account read another's invoice would make
the comparison a lie. Correctness only; the timings are ``make bench``'s job.
"""

from __future__ import annotations

import re
import sys

import pytest
from werkzeug.security import generate_password_hash

from portal.infra.config import ROOT
from portal.infra.extensions import db
from tests.conftest import PASSWORD, Auth
from tests.web.test_sql_per_page import make_account

sys.path.insert(0, str(ROOT / "scripts"))
import bench_floor  # noqa: E402


@pytest.fixture
def signed_in(app, client):
    """Two accounts with stored invoices; ``client`` is signed in as the first."""
    password_hash = generate_password_hash(PASSWORD)
    with app.app_context():
        make_account("floor", 2, password_hash, 1)
        make_account("stranger", 1, password_hash, 3)
        db.session.commit()
    assert Auth(client).login("floor@firma.example.com").status_code == 302


def invoice_ids(client) -> list[str]:
    html = client.get("/invoices").get_data(as_text=True)
    return re.findall(r'href="/invoices/([^"/]+)\.pdf"', html)


def floor_client(app, cookie: str | None):
    floor = bench_floor.create_app(app.config["SECRET_KEY"], app.config["SQLALCHEMY_DATABASE_URI"])
    client = floor.test_client()
    if cookie is not None:
        client.set_cookie("session", cookie)
    return floor, client


def test_the_floor_answers_what_the_portal_answers_for_the_same_session(app, client, signed_in):
    public_id = invoice_ids(client)[0]
    portal_pdf = client.get(f"/invoices/{public_id}.pdf")
    assert portal_pdf.status_code == 200
    cookie = client.get_cookie("session")
    assert cookie is not None
    floor, signed = floor_client(app, cookie.value)
    try:
        for path in ["/", "/session", "/query", "/user"]:
            answer = signed.get(path)
            assert (answer.status_code, answer.data) == (200, b"ok"), path
        pdf = signed.get(f"/pdf/{public_id}")
        assert pdf.status_code == 200
        assert pdf.mimetype == "application/pdf"
        assert pdf.data == portal_pdf.data
        for header in ["Content-Disposition", "Cache-Control"]:
            assert pdf.headers[header] == portal_pdf.headers[header]
        assert signed.get(f"/bytes/{public_id}").data == portal_pdf.data
        page = signed.get("/page").get_data(as_text=True)
        assert "Mój pakiet" in page  # translated by Flask-Babel
        assert "floor@firma.example.com" in page  # the signed-in user's own
    finally:
        with floor.app_context():
            db.engine.dispose()


def test_the_floor_checks_the_session_and_the_account_as_the_portal_does(app, client, signed_in):
    own = invoice_ids(client)
    cookie = client.get_cookie("session")
    assert cookie is not None
    # The stranger signs in on another browser: logging out here would end this session
    # (a revoked cookie), which the floor refuses as the portal does.
    other = app.test_client()
    assert Auth(other).login("stranger@firma.example.com").status_code == 302
    strangers = invoice_ids(other)
    assert strangers and not set(strangers) & set(own)
    floor, signed = floor_client(app, cookie.value)
    _, anonymous = floor_client(app, None)
    try:
        for path in ["/session", "/query", "/user", f"/pdf/{own[0]}", "/page"]:
            assert anonymous.get(path).status_code == 401, path
        assert signed.get(f"/pdf/{strangers[0]}").status_code == 404
        assert signed.get("/pdf/no-such-invoice").status_code == 404
    finally:
        with floor.app_context():
            db.engine.dispose()
